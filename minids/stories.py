"""A seeded generator of short children's stories in English and in Chinese. (Chapter 1.)

TinyStories-like: a named hero and a friend, a place, a beloved object, and one of several plots with a
beginning, a problem and a resolution. Each language has its own names, places, objects and sentence
templates (the Chinese stories are written in Chinese, with measure words and Chinese story idioms, not
translated word by word), and every sentence slot has several phrasings, so that a character-level model
first learns words, then grammar.

Every story is one paragraph (no blank line inside); a corpus is stories joined by one blank line.

Determinism: all randomness comes from one `random.Random(seed)` per language; lists are fixed tuples,
never sets or dicts iterated for choices, so the same seed gives the same bytes on every machine.

`make_story(rng, lang)` returns a `Story` with its text and its facts (hero, friend, place, object, plot):
the instruction-data generator (chapter 3) asks questions about those facts.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

LANGS = ("en", "zh")
# Bytes of UTF-8 per language at each scale.
SCALE_BYTES = {"tiny": 1_000_000, "full": 50_000_000}
DEFAULT_SEED = 1337


@dataclass(frozen=True)
class Story:
    """One story: its text and the facts a question about it can check."""

    lang: str
    plot: str
    text: str
    # hero, hero_kind, friend, place, place_phrase ("in the park"), object, color, his/gender (pronouns), in `lang`
    facts: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- English
EN_GIRLS = ("Lily", "Mia", "Emma", "Anna", "Lucy", "Sara", "Zoe", "Ella", "Amy", "Rose", "Nora", "Ruby",
            "Grace", "Maya", "Ivy", "Chloe", "Daisy", "Hannah", "Kate", "Molly")
EN_BOYS = ("Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Noah", "Finn", "Oscar", "Luke", "Jake",
           "Eli", "Owen", "Hugo", "Dan", "Peter", "Henry", "Bob", "Alex")
EN_KINDS = ("girl", "boy", "rabbit", "bear", "cat", "dog", "fox", "duck", "mouse", "squirrel", "frog",
            "puppy", "kitten", "owl", "bird", "pig", "lamb", "turtle")
EN_TRAITS = ("kind", "happy", "curious", "brave", "shy", "little", "clever", "cheerful", "gentle", "playful",
             "small", "friendly", "busy", "funny")
EN_HOBBIES = ("to run and jump", "to sing songs", "to draw pictures", "to read books", "to look at the stars",
              "to pick flowers", "to play in the mud", "to dance in the sun", "to build things",
              "to climb trees", "to splash in puddles", "to eat apples", "to tell jokes", "to count clouds")
EN_TIMES = ("One day", "One sunny morning", "One warm afternoon", "One cold winter day", "On a windy day",
            "Early one morning", "After lunch one day", "One bright spring day", "Last summer",
            "On a quiet evening")
# (name, "in/at/on" phrase, hiding spots)
EN_PLACES = (
    ("the park", "in the park", ("bench", "big tree", "slide", "bush")),
    ("the garden", "in the garden", ("flowers", "rose bush", "old pot", "fence")),
    ("the beach", "at the beach", ("rock", "little boat", "big towel", "sand hill")),
    ("the forest", "in the forest", ("log", "tall tree", "ferns", "mossy rock")),
    ("the farm", "on the farm", ("hay", "red barn", "cart", "water trough")),
    ("the river", "by the river", ("reeds", "wooden bridge", "stones", "willow tree")),
    ("the school", "at the school", ("desk", "bookshelf", "swing", "door")),
    ("the village", "in the village", ("well", "market stall", "wall", "old cart")),
    ("the hill", "on the hill", ("grass", "big stone", "oak tree", "bushes")),
    ("the library", "in the library", ("table", "shelf", "chair", "rug")),
    ("the kitchen", "in the kitchen", ("table", "chair", "cupboard", "basket")),
    ("the zoo", "at the zoo", ("gate", "bench", "fence", "bushes")),
    ("the pond", "by the pond", ("lily pads", "reeds", "log", "rock")),
    ("the meadow", "in the meadow", ("tall grass", "daisies", "old fence", "stone")),
)
# (noun, article) ; the colour goes before the noun
EN_OBJECTS = (("ball", "a"), ("kite", "a"), ("book", "a"), ("umbrella", "an"), ("hat", "a"), ("toy car", "a"),
              ("teddy bear", "a"), ("scarf", "a"), ("shell", "a"), ("drum", "a"), ("boat", "a"),
              ("balloon", "a"), ("cup", "a"), ("bell", "a"), ("box", "a"), ("doll", "a"), ("key", "a"),
              ("crayon", "a"), ("ribbon", "a"), ("whistle", "a"))
EN_COLORS = ("red", "blue", "shiny", "big", "little", "yellow", "green", "soft", "old", "purple", "pink",
             "orange", "striped", "golden")
EN_SEEN = ("red", "blue", "shiny", "yellow", "green", "purple", "pink", "orange", "striped", "golden")
EN_FEARS = (("the dark", "it was dark"), ("thunder", "the thunder boomed"), ("the big dog next door", "the dog barked"),
            ("deep water", "the water looked deep"), ("the loud wind", "the wind howled"))
EN_BUILDS = (("a sandcastle", "sand"), ("a tall tower", "blocks"), ("a snowman", "snow"),
             ("a little house", "sticks"), ("a bridge", "stones"), ("a nest", "twigs"))
EN_ANIMALS = (("a little bird", "its wing was hurt", "fly"), ("a lost puppy", "it could not find its home", "run"),
              ("a wet kitten", "it was cold and shaking", "purr"), ("a baby duck", "it could not find its mother", "swim"),
              ("a tiny turtle", "it was stuck on its back", "walk"))
EN_FEELINGS_BAD = ("sad", "upset", "worried", "unhappy")
EN_FEELINGS_GOOD = ("happy", "glad", "proud", "excited")


def _en_char(r: random.Random, exclude: str = "") -> dict:
    gender = r.choice(("f", "m"))
    names = [n for n in (EN_GIRLS if gender == "f" else EN_BOYS) if n != exclude]
    name = r.choice(names)
    kind = r.choice(EN_KINDS)
    if kind == "girl":
        gender = "f"
        name = r.choice([n for n in EN_GIRLS if n != exclude])
    if kind == "boy":
        gender = "m"
        name = r.choice([n for n in EN_BOYS if n != exclude])
    he, him, his = ("she", "her", "her") if gender == "f" else ("he", "him", "his")
    return {"name": name, "kind": kind, "he": he, "him": him, "his": his, "He": he.capitalize(),
            "His": his.capitalize()}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _en_opening(r: random.Random, h: dict, place: tuple) -> list[str]:
    trait = r.choice(EN_TRAITS)
    k = r.randrange(5)
    if k == 0:
        return [f"Once upon a time, there was {_a(trait)} {h['kind']} named {h['name']}.",
                f"{h['He']} loved {r.choice(EN_HOBBIES)}."]
    if k == 1:
        return [f"{h['name']} was {_a(trait)} {h['kind']} who lived near {place[0]}."]
    if k == 2:
        return [f"Once there was {_a(h['kind'])} called {h['name']}.",
                f"{h['name']} was very {trait} and liked {r.choice(EN_HOBBIES)}."]
    if k == 3:
        return [f"There was once {_a(trait)} {h['kind']}.", f"{h['His']} name was {h['name']}."]
    return [f"In a small house near {place[0]} lived {_a(trait)} {h['kind']} named {h['name']}."]


def _en_meet(r: random.Random, h: dict, f: dict) -> str:
    return r.choice((
        f"Then {h['his']} friend {f['name']} the {f['kind']} came by.",
        f"Just then, {f['name']}, {_a(f['kind'])} from next door, walked up.",
        f"Soon {f['name']} the {f['kind']} saw {h['him']} and came over.",
    ))


def _en_ending(r: random.Random, h: dict, f: dict, lesson: str) -> list[str]:
    k = r.randrange(4)
    if k == 0:
        return [f"From that day on, {h['name']} and {f['name']} were best friends."]
    if k == 1:
        return [f"{h['name']} learned that {lesson}."]
    if k == 2:
        return [f"That night, {h['name']} smiled in {h['his']} bed.", "It had been a very good day."]
    return [f"{h['name']} and {f['name']} laughed and went home together.", "The end."]


def _en_lost(r, h, f, place, obj, color):
    noun = obj[0]
    s1, s2, s3 = r.sample(place[2], 3)
    return [
        r.choice((f"{h['name']} had {_a(color)} {noun} that {h['he']} loved very much.",
                  f"{h['name']}'s favorite toy was {_a(color)} {noun}.",
                  f"{h['His']} grandma gave {h['him']} {_a(color)} {noun} for {h['his']} birthday.")),
        f"{r.choice(EN_TIMES)}, {h['he']} took the {noun} to {place[0]}.",
        r.choice((f"{h['He']} played with it for a long time.", f"{h['He']} had so much fun with it.",
                  f"{h['He']} showed it to everyone {h['he']} met.")),
        r.choice((f"But when {h['he']} looked for the {noun}, it was gone!",
                  f"Then {h['he']} put it down to rest, and when {h['he']} turned around, the {noun} was gone.",
                  f"But a gust of wind came, and the {noun} was nowhere to be seen.")),
        f"{h['name']} felt very {r.choice(EN_FEELINGS_BAD)}.",
        f"{h['He']} looked behind the {s1} and under the {s2}, but {h['he']} could not find it.",
        _en_meet(r, h, f),
        r.choice((f"\"Why are you sad?\" asked {f['name']}.", f"\"What is wrong?\" {f['name']} asked.")),
        f"\"I lost my {noun},\" said {h['name']}.",
        r.choice((f"\"Don't worry, I will help you,\" said {f['name']}.", f"\"Let's look together,\" said {f['name']}.")),
        f"They looked and looked. Soon {f['name']} saw something {color + ' ' if color in EN_SEEN else ''}near the {s3}.",
        f"It was the {noun}!",
        r.choice((f"{h['name']} hugged {f['name']}. \"Thank you!\" {h['he']} said.",
                  f"\"You found it!\" cried {h['name']}, and {h['he']} jumped for joy.")),
    ], "friends can help when things go wrong"


def _en_stuck(r, h, f, place, obj, color):
    noun = obj[0]
    high = r.choice(("up in a tall tree", "on the roof of a shed", "on top of a high wall", "in a tree branch"))
    tool = r.choice(("a long stick", "a ladder", "a big box to stand on", "a rope"))
    return [
        f"{r.choice(EN_TIMES)}, {h['name']} was playing with {h['his']} {color} {noun} {place[1]}.",
        r.choice((f"{h['He']} threw it high into the air.", f"A strong wind blew the {noun} away.",
                  f"{h['He']} kicked it as hard as {h['he']} could.")),
        f"Oh no! The {noun} got stuck {high}.",
        r.choice((f"{h['name']} jumped and jumped, but {h['he']} was too small to reach it.",
                  f"{h['name']} tried to climb up, but it was too high.")),
        f"{h['He']} felt {r.choice(EN_FEELINGS_BAD)} and sat down.",
        _en_meet(r, h, f),
        r.choice((f"\"I can help,\" said {f['name']}. \"I have an idea.\"",
                  f"{f['name']} thought for a moment. \"Wait here,\" {f['he']} said.")),
        f"{f['name']} came back with {tool}.",
        r.choice((f"Together they worked hard, and at last the {noun} came down.",
                  f"With {tool}, {f['name']} reached the {noun} and gave it back to {h['name']}.")),
        f"{h['name']} was so {r.choice(EN_FEELINGS_GOOD)}.",
        f"\"Thank you, {f['name']}!\" {h['he']} said. \"Let's play together!\"",
    ], "a good friend can solve a hard problem"


def _en_share(r, h, f, place, obj, color):
    noun = obj[0]
    return [
        f"{h['name']} had a new {color} {noun}.",
        f"{r.choice(EN_TIMES)}, {h['he']} brought it to {place[0]}.",
        f"{f['name']} the {f['kind']} saw the {noun} and asked, \"Can I play with it too?\"",
        r.choice((f"\"No, it is mine,\" said {h['name']}, and {h['he']} held it tight.",
                  f"{h['name']} did not want to share. \"Go away,\" {h['he']} said.")),
        f"{f['name']} walked away, looking {r.choice(EN_FEELINGS_BAD)}.",
        r.choice((f"Soon {h['name']} felt lonely. Playing alone was not much fun.",
                  f"After a while, the {noun} did not seem so fun any more.")),
        f"{h['He']} thought about {f['name']}'s sad face.",
        f"So {h['he']} ran to {f['name']} and said, \"I am sorry. Let's play with my {noun} together.\"",
        r.choice((f"{f['name']} smiled, and they played until the sun went down.",
                  f"They took turns, and they laughed all afternoon.")),
    ], "sharing makes playing more fun"


def _en_fear(r, h, f, place, obj, color):
    fear, moment = r.choice(EN_FEARS)
    return [
        f"{h['name']} was afraid of {fear}.",
        f"{r.choice(EN_TIMES)}, {h['name']} was {place[1]} when {moment}.",
        r.choice((f"{h['He']} hid behind the {place[2][0]} and closed {h['his']} eyes.",
                  f"{h['His']} legs shook and {h['he']} wanted to cry.")),
        _en_meet(r, h, f),
        f"\"Are you scared?\" asked {f['name']} softly.",
        f"{h['name']} nodded. \"I am scared of {fear},\" {h['he']} said.",
        r.choice((f"\"I was scared too, once,\" said {f['name']}. \"Hold my hand.\"",
                  f"{f['name']} gave {h['him']} {_a(color)} {obj[0]} to hold. \"You are braver than you think.\"")),
        f"{h['name']} took a deep breath.",
        r.choice((f"Little by little, {h['he']} felt better.", f"Soon {h['he']} was not shaking any more.")),
        f"{fear[0].upper() + fear[1:]} was not so scary with a friend.",
    ], "being brave is easier with a friend"


def _en_build(r, h, f, place, obj, color):
    thing, stuff = r.choice(EN_BUILDS)
    return [
        f"{r.choice(EN_TIMES)}, {h['name']} wanted to make {thing} {place[1]}.",
        f"{h['He']} gathered lots of {stuff} and started to work.",
        r.choice((f"It grew taller and taller.", f"{h['He']} worked very hard.")),
        r.choice(("But then it fell down with a big crash!", "But a big gust of wind knocked it over!",
                  "But then one side slipped, and the whole thing fell down.")),
        f"{h['name']} felt {r.choice(EN_FEELINGS_BAD)} and wanted to give up.",
        _en_meet(r, h, f),
        r.choice((f"\"Let's try again, together,\" said {f['name']}.",
                  f"\"Don't give up,\" said {f['name']}. \"I will help you.\"")),
        f"This time they made the bottom wide and strong.",
        f"They put {_a(color)} {obj[0]} on the top.",
        f"When it was done, it was the best {thing.split(' ', 1)[1]} {place[1]}.",
        f"{h['name']} felt very {r.choice(EN_FEELINGS_GOOD)}.",
    ], "if you try again, you can do it"


def _en_animal(r, h, f, place, obj, color):
    animal, problem, verb = r.choice(EN_ANIMALS)
    return [
        f"{r.choice(EN_TIMES)}, {h['name']} was walking {place[1]}.",
        f"Near the {r.choice(place[2])}, {h['he']} found {animal}.",
        f"Poor thing, {problem}.",
        r.choice((f"{h['name']} wanted to help, but {h['he']} did not know how.",
                  f"\"What should I do?\" {h['name']} said to {h['him']}self.")),
        _en_meet(r, h, f),
        f"\"We can take care of it,\" said {f['name']}.",
        r.choice((f"They made a soft bed in {_a(color)} {obj[0]} and gave it water.",
                  f"They kept it warm and gave it some food.")),
        f"Every day they came to see it.",
        f"After a few days, it was well again, and it could {verb}.",
        r.choice((f"It looked at them as if to say thank you.", f"{h['name']} and {f['name']} waved goodbye.")),
    ], "helping others feels good"


def _en_rain(r, h, f, place, obj, color):
    return [
        f"{h['name']} had a good friend, {f['name']} the {f['kind']}.",
        f"{h['name']} and {f['name']} wanted to have a picnic {place[1]}.",
        f"They packed bread, apples and {_a(color)} {obj[0]}.",
        f"But when they opened the door, it was raining hard.",
        r.choice((f"\"Oh no, now we cannot go,\" said {h['name']}.", f"{h['name']} looked out of the window and sighed.")),
        f"{f['name']} had an idea. \"Let's have the picnic inside!\"",
        f"They put a blanket on the floor and ate their lunch there.",
        r.choice((f"They told stories and sang songs.", f"They played games and built a fort with pillows.")),
        f"After lunch, the rain stopped, and a big rainbow came out.",
        f"They ran outside to {place[0]} and jumped in the puddles.",
        f"It was the best picnic ever.",
    ], "a rainy day can still be fun"


EN_PLOTS = (("lost", _en_lost), ("stuck", _en_stuck), ("share", _en_share), ("fear", _en_fear),
            ("build", _en_build), ("animal", _en_animal), ("rain", _en_rain))


def _make_en(r: random.Random) -> Story:
    h = _en_char(r)
    f = _en_char(r, exclude=h["name"])
    place = r.choice(EN_PLACES)
    obj = r.choice(EN_OBJECTS)
    color = r.choice(EN_COLORS)
    plot, fn = r.choice(EN_PLOTS)
    body, lesson = fn(r, h, f, place, obj, color)
    sents = _en_opening(r, h, place) + body + _en_ending(r, h, f, lesson)
    facts = {"hero": h["name"], "hero_kind": h["kind"], "friend": f["name"], "place": place[0],
             "place_phrase": place[1], "object": obj[0], "color": color, "his": h["his"], "gender": h["he"]}
    return Story("en", plot, " ".join(sents), facts)


# ----------------------------------------------------------------------------------------------- Chinese
ZH_GIRLS = ("小红", "朵朵", "甜甜", "小雨", "小月", "果果", "丽丽", "美美", "兰兰", "小芳", "花花", "圆圆",
            "悦悦", "婷婷", "小雪", "佳佳")
ZH_BOYS = ("小明", "乐乐", "豆豆", "明明", "阳阳", "天天", "丁丁", "小虎", "壮壮", "小军", "冬冬", "亮亮",
           "小刚", "贝贝", "球球", "小宝")
# (kind, measure word)
ZH_KINDS = (("小女孩", "个"), ("小男孩", "个"), ("小兔子", "只"), ("小熊", "只"), ("小猫", "只"), ("小狗", "只"),
            ("小狐狸", "只"), ("小鸭子", "只"), ("小老鼠", "只"), ("小松鼠", "只"), ("小青蛙", "只"),
            ("小猴子", "只"), ("小猪", "只"), ("小羊", "只"), ("小乌龟", "只"), ("小鸟", "只"))
ZH_TRAITS = ("善良", "快乐", "好奇", "勇敢", "害羞", "聪明", "活泼", "温柔", "调皮", "可爱", "懂事", "爱笑")
ZH_HOBBIES = ("唱歌", "画画", "看书", "跑步", "看星星", "摘花", "踢球", "跳舞", "堆积木", "爬树", "踩水坑",
              "吃苹果", "讲笑话", "数云朵")
ZH_TIMES = ("有一天", "一个阳光明媚的早上", "一个暖洋洋的下午", "一个寒冷的冬天", "一个刮大风的日子",
            "一大早", "吃过午饭以后", "春天来了，有一天", "去年夏天", "一个安静的傍晚")
# (name, hiding spots)
ZH_PLACES = (
    ("公园", ("长椅", "大树", "滑梯", "草丛")), ("花园", ("花丛", "玫瑰丛", "旧花盆", "篱笆")),
    ("海边", ("礁石", "小船", "大毛巾", "沙堆")), ("森林", ("树桩", "大树", "蕨草", "石头")),
    ("农场", ("草垛", "红色谷仓", "小推车", "水槽")), ("小河边", ("芦苇", "木桥", "鹅卵石", "柳树")),
    ("学校", ("课桌", "书架", "秋千", "门")), ("村子", ("水井", "小摊", "墙", "旧马车")),
    ("山坡上", ("草地", "大石头", "橡树", "灌木丛")), ("图书馆", ("桌子", "书架", "椅子", "地毯")),
    ("厨房", ("桌子", "椅子", "柜子", "篮子")), ("动物园", ("大门", "长椅", "栅栏", "树丛")),
    ("池塘边", ("荷叶", "芦苇", "木头", "石头")), ("草地上", ("高高的草", "小雏菊", "旧篱笆", "石头")),
)
# (noun, measure word)
ZH_OBJECTS = (("皮球", "个"), ("风筝", "只"), ("故事书", "本"), ("雨伞", "把"), ("帽子", "顶"), ("玩具车", "辆"),
              ("玩具熊", "只"), ("围巾", "条"), ("贝壳", "个"), ("小鼓", "面"), ("小船", "只"), ("气球", "个"),
              ("杯子", "个"), ("铃铛", "个"), ("盒子", "个"), ("布娃娃", "个"), ("钥匙", "把"), ("蜡笔", "支"),
              ("丝带", "条"), ("口哨", "个"))
ZH_COLORS = ("红色的", "蓝色的", "亮晶晶的", "大大的", "小小的", "黄色的", "绿色的", "软软的", "旧旧的", "紫色的",
             "粉红色的", "橙色的", "花花绿绿的", "金色的")
ZH_SEEN = ("红色的", "蓝色的", "亮晶晶的", "黄色的", "绿色的", "紫色的", "粉红色的", "橙色的", "花花绿绿的", "金色的")
ZH_FEARS = (("黑夜", "天慢慢黑了"), ("打雷", "天上轰隆隆地打起了雷"), ("隔壁的大狗", "大狗汪汪地叫起来"),
            ("深水", "河水看起来好深好深"), ("大风", "大风呼呼地吹"))
ZH_BUILDS = (("沙堡", "沙子"), ("高塔", "积木"), ("雪人", "雪"), ("小房子", "树枝"), ("小桥", "石头"), ("鸟窝", "小树枝"))
ZH_ANIMALS = (("一只小鸟", "它的翅膀受伤了", "飞"), ("一只迷路的小狗", "它找不到回家的路", "跑"),
              ("一只湿漉漉的小猫", "它冷得直发抖", "跳"), ("一只小鸭子", "它找不到妈妈了", "游泳"),
              ("一只小乌龟", "它翻不过身来", "爬"))
ZH_BAD = ("难过", "伤心", "着急", "委屈")
ZH_GOOD = ("高兴", "开心", "骄傲", "兴奋")


def _zh_near(place: tuple) -> str:
    """公园 -> 公园, 小河边 -> 小河, 山坡上 -> 山坡: the place as a landmark ("near X")."""
    name = place[0].removesuffix("上")
    return name.removesuffix("边") if len(name) > 2 else name


def _zh_in(place: tuple) -> str:
    """公园 -> 公园里, 小河边 -> 小河边, 山坡上 -> 山坡上: the place as a location ("in X")."""
    return place[0] if place[0].endswith(("上", "边")) else place[0] + "里"


def _zh_char(r: random.Random, exclude: str = "") -> dict:
    kind, mw = r.choice(ZH_KINDS)
    gender = "f" if kind == "小女孩" else "m" if kind == "小男孩" else r.choice(("f", "m"))
    name = r.choice([n for n in (ZH_GIRLS if gender == "f" else ZH_BOYS) if n != exclude])
    return {"name": name, "kind": kind, "mw": mw, "ta": "她" if gender == "f" else "他"}


def _zh_opening(r: random.Random, h: dict, place: tuple) -> str:
    trait = r.choice(ZH_TRAITS)
    n, k, mw, ta = h["name"], h["kind"], h["mw"], h["ta"]
    return r.choice((
        f"从前，有一{mw}{trait}的{k}，名字叫{n}。{ta}最喜欢{r.choice(ZH_HOBBIES)}。",
        f"{n}是一{mw}{trait}的{k}，家就在{_zh_near(place)}附近。",
        f"在{_zh_near(place)}旁边，住着一{mw}{k}，大家都叫{ta}{n}。",
        f"很久很久以前，有一{mw}{k}叫{n}。{n}很{trait}，每天都{r.choice(ZH_HOBBIES)}。",
        "{n}是一{mw}{k}。{ta}又{t[0]}又{t[1]}。".format(n=n, mw=mw, k=k, ta=ta, t=r.sample(ZH_TRAITS, 2)),
    ))


def _zh_meet(r: random.Random, h: dict, f: dict) -> str:
    return r.choice((
        f"这时，{h['ta']}的好朋友{f['kind']}{f['name']}走了过来。",
        f"正在这时，{f['name']}从旁边经过。",
        f"就在这个时候，{f['kind']}{f['name']}看见了{h['ta']}，连忙跑了过来。",
    ))


def _zh_ending(r: random.Random, h: dict, f: dict, lesson: str) -> str:
    return r.choice((
        f"从那以后，{h['name']}和{f['name']}成了最好的朋友。",
        f"{h['name']}明白了一个道理：{lesson}。",
        f"那天晚上，{h['name']}躺在床上，甜甜地笑了。多么美好的一天啊！",
        f"{h['name']}和{f['name']}手拉着手，开开心心地回家了。",
    ))


def _zh_lost(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    noun, mw = obj
    s1, s2, s3 = r.sample(place[1], 3)
    return [
        r.choice((f"{n}有一{mw}{color}{noun}，{ta}非常喜欢它。", f"{n}最心爱的东西是一{mw}{color}{noun}。",
                  f"过生日的时候，奶奶送给{n}一{mw}{color}{noun}。")),
        f"{r.choice(ZH_TIMES)}，{ta}带着{noun}来到了{place[0]}。",
        r.choice((f"{ta}玩得可开心了。", f"{ta}把{noun}拿给遇到的每一个人看。", f"{ta}玩了好久好久。")),
        r.choice((f"可是过了一会儿，{noun}不见了！", f"{ta}把{noun}放在一边休息，一转身，{noun}就不见了。",
                  f"忽然刮来一阵风，{noun}一下子就找不到了。")),
        f"{n}{r.choice(ZH_BAD[:3])}得快要哭了。",
        f"{ta}找了{s1}后面，又找了{s2}下面，可是怎么也找不到。",
        _zh_meet(r, h, f),
        r.choice((f"{fn}问：“{n}，你怎么了？”", f"“你为什么不高兴呀？”{fn}问。")),
        f"“我的{noun}丢了。”{n}小声地说。",
        r.choice((f"“别着急，我来帮你找！”{fn}说。", f"“我们一起找吧！”{fn}说。")),
        f"他们找啊找，终于，{fn}在{s3}旁边看见了{'一个' + color if color in ZH_SEEN else '一样'}东西。",
        f"那正是{n}的{noun}！",
        r.choice((f"{n}紧紧地抱住{fn}，说：“谢谢你！”", f"“找到啦！”{n}高兴得跳了起来。")),
    ], "遇到困难的时候，朋友会帮助你"


def _zh_stuck(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    noun, mw = obj
    high = r.choice(("挂在了高高的树枝上", "落在了小屋的屋顶上", "卡在了高高的墙头上", "挂在了大树上"))
    tool = r.choice(("一根长长的竹竿", "一架梯子", "一个大箱子", "一根绳子"))
    return [
        f"{r.choice(ZH_TIMES)}，{n}在{_zh_in(place)}玩{ta}的{color}{noun}。",
        r.choice((f"{ta}用力把{noun}往天上一扔。", f"一阵大风吹来，把{noun}吹跑了。", f"{ta}使劲一踢。")),
        f"哎呀！{noun}{high}。",
        r.choice((f"{n}跳了又跳，可是{ta}太矮了，够不着。", f"{n}想爬上去，可是太高了。")),
        f"{ta}{r.choice(ZH_BAD)}地坐在地上。",
        _zh_meet(r, h, f),
        r.choice((f"“别担心，我有办法！”{fn}说。", f"{fn}想了想，说：“你在这儿等我一下。”")),
        f"不一会儿，{fn}拿来了{tool}。",
        r.choice((f"他们一起努力，{noun}终于被取下来了。", f"{fn}用{tool}把{noun}够了下来，还给了{n}。")),
        f"{n}{r.choice(ZH_GOOD)}极了。",
        f"“谢谢你，{fn}！我们一起玩吧！”",
    ], "好朋友能一起解决难题"


def _zh_share(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    noun, mw = obj
    return [
        f"{n}有了一{mw}新的{color}{noun}。",
        f"{r.choice(ZH_TIMES)}，{ta}把{noun}带到了{place[0]}。",
        f"{f['kind']}{fn}看见了，问：“我可以和你一起玩吗？”",
        r.choice((f"“不行，这是我的！”{n}紧紧地抱着{noun}说。", f"{n}不想分享，说：“你走开！”")),
        f"{fn}{r.choice(ZH_BAD)}地走开了。",
        r.choice((f"过了一会儿，{n}觉得好孤单，一个人玩一点儿也不好玩。", f"慢慢地，{n}觉得{noun}没有那么好玩了。")),
        f"{ta}想起了{fn}难过的样子。",
        f"于是{ta}跑到{fn}身边，说：“对不起，我们一起玩{noun}吧。”",
        r.choice((f"{fn}笑了，他们一直玩到太阳下山。", f"他们轮流玩，整个下午都笑个不停。")),
    ], "分享让快乐变成两份"


def _zh_fear(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    fear, moment = r.choice(ZH_FEARS)
    return [
        f"{n}很怕{fear}。",
        f"{r.choice(ZH_TIMES)}，{n}正在{_zh_in(place)}玩，{moment}。",
        r.choice((f"{ta}躲在{place[1][0]}后面，紧紧地闭上了眼睛。", f"{ta}的腿直发抖，差点儿哭出来。")),
        _zh_meet(r, h, f),
        f"“你害怕吗？”{fn}轻轻地问。",
        f"{n}点点头说：“我怕{fear}。”",
        r.choice((f"“我以前也怕过，”{fn}说，“拉着我的手吧。”",
                  f"{fn}把一{obj[1]}{color}{obj[0]}放到{n}手里，说：“你比你想的更勇敢。”")),
        f"{n}深深地吸了一口气。",
        r.choice((f"慢慢地，{ta}不那么害怕了。", f"很快，{ta}就不发抖了。")),
        f"原来有朋友在身边，{fear}也没有那么可怕。",
    ], "有朋友陪着，勇敢就容易多了"


def _zh_build(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    thing, stuff = r.choice(ZH_BUILDS)
    return [
        f"{r.choice(ZH_TIMES)}，{n}想在{_zh_in(place)}做一个{thing}。",
        f"{ta}找来了好多{stuff}，开始认真地做起来。",
        r.choice((f"{thing}越来越高了。", f"{ta}做得满头大汗。")),
        f"可是突然“哗啦”一声，{thing}倒了！",
        f"{n}{r.choice(ZH_BAD)}极了，不想再做了。",
        _zh_meet(r, h, f),
        r.choice((f"“我们一起再试一次吧！”{fn}说。", f"“别放弃，我来帮你。”{fn}说。")),
        f"这一次，他们把底下做得又宽又结实。",
        f"最后，他们在顶上放了一{obj[1]}{color}{obj[0]}。",
        f"做好了！这是{_zh_in(place)}最漂亮的{thing}。",
        f"{n}{r.choice(ZH_GOOD)}地笑了。",
    ], "只要不放弃，就一定能做成"


def _zh_animal(r, h, f, place, obj, color):
    n, ta, fn = h["name"], h["ta"], f["name"]
    animal, problem, verb = r.choice(ZH_ANIMALS)
    return [
        f"{r.choice(ZH_TIMES)}，{n}在{_zh_in(place)}散步。",
        f"在{r.choice(place[1])}旁边，{ta}发现了{animal}。",
        f"真可怜，{problem}。",
        r.choice((f"{n}想帮助它，可是不知道该怎么办。", f"“我该怎么办呢？”{n}自言自语地说。")),
        _zh_meet(r, h, f),
        f"“我们来照顾它吧。”{fn}说。",
        r.choice((f"他们用一{obj[1]}{color}{obj[0]}给它做了一个软软的小床，还给它喝水。",
                  f"他们让它暖暖和和的，还给它找来了吃的。")),
        f"每天，他们都来看它。",
        f"几天以后，它好了，又能{verb}了。",
        r.choice((f"它看着他们，好像在说谢谢。", f"{n}和{fn}挥挥手，跟它说再见。")),
    ], "帮助别人，自己也会很快乐"


def _zh_rain(r, h, f, place, obj, color):
    n, fn = h["name"], f["name"]
    return [
        f"{n}有一个好朋友，是{f['kind']}{fn}。",
        f"{n}和{fn}想去{place[0]}野餐。",
        f"他们准备了面包、苹果，还有一{obj[1]}{color}{obj[0]}。",
        f"可是一打开门，外面正下着大雨。",
        r.choice((f"“哎呀，去不成了。”{n}说。", f"{n}趴在窗户上，叹了一口气。")),
        f"{fn}想了一个好主意：“我们在家里野餐吧！”",
        f"他们在地板上铺了一块毯子，坐在上面吃午饭。",
        r.choice((f"他们讲故事、唱儿歌。", f"他们玩游戏，还用枕头搭了一座城堡。")),
        f"吃完午饭，雨停了，天上出现了一道大大的彩虹。",
        f"他们跑到{place[0]}，在水坑里跳来跳去。",
        f"这真是最棒的一次野餐！",
    ], "下雨天也可以很好玩"


ZH_PLOTS = (("lost", _zh_lost), ("stuck", _zh_stuck), ("share", _zh_share), ("fear", _zh_fear),
            ("build", _zh_build), ("animal", _zh_animal), ("rain", _zh_rain))


def _make_zh(r: random.Random) -> Story:
    h = _zh_char(r)
    f = _zh_char(r, exclude=h["name"])
    place = r.choice(ZH_PLACES)
    obj = r.choice(ZH_OBJECTS)
    color = r.choice(ZH_COLORS)
    plot, fn = r.choice(ZH_PLOTS)
    body, lesson = fn(r, h, f, place, obj, color)
    text = _zh_opening(r, h, place) + "".join(body) + _zh_ending(r, h, f, lesson)
    facts = {"hero": h["name"], "hero_kind": h["kind"], "friend": f["name"], "place": place[0],
             "place_phrase": _zh_in(place), "object": obj[0], "color": color, "his": h["ta"], "gender": h["ta"]}
    return Story("zh", plot, text, facts)


# ----------------------------------------------------------------------------------------------- API
def make_story(rng: random.Random, lang: str) -> Story:
    """One story in `lang` ("en" or "zh"), drawing all randomness from `rng`."""
    if lang == "en":
        return _make_en(rng)
    if lang == "zh":
        return _make_zh(rng)
    raise ValueError(f"lang={lang!r} is not one of {LANGS}")


def lang_seed(seed: int, lang: str) -> int:
    """The seed of one language's stream: the two languages are independent streams of one seed."""
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r} is not one of {LANGS}")
    return seed * 1009 + LANGS.index(lang)


def iter_stories(lang: str, seed: int = DEFAULT_SEED):
    """An endless, deterministic stream of `Story` objects in `lang`."""
    rng = random.Random(lang_seed(seed, lang))
    while True:
        yield make_story(rng, lang)


def generate(lang: str, n_bytes: int, seed: int = DEFAULT_SEED) -> str:
    """Stories in `lang` joined by blank lines, stopping at the first story that reaches `n_bytes` of UTF-8."""
    if n_bytes < 1:
        raise ValueError(f"n_bytes={n_bytes!r} must be at least 1")
    out: list[str] = []
    total = 0
    for story in iter_stories(lang, seed):
        out.append(story.text)
        total += len(story.text.encode("utf-8")) + 2
        if total >= n_bytes:
            break
    return "\n\n".join(out) + "\n"


def build_files(scale: str, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """The files of this generator at `scale`: {"stories_en.txt": text, "stories_zh.txt": text}."""
    if scale not in SCALE_BYTES:
        raise ValueError(f"scale={scale!r} is not one of {tuple(SCALE_BYTES)}")
    return {f"stories_{lang}.txt": generate(lang, SCALE_BYTES[scale], seed) for lang in LANGS}
