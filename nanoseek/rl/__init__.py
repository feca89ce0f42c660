"""Reinforcement learning for reasoning: rule rewards, advantages, PPO/GRPO losses, rollouts. (Chapter 10.)"""
