"""minids: small seeded synthetic data sets (stories, instructions, ...) that the chapters train on."""
