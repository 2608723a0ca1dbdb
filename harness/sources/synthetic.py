"""Task data the project generates itself, in the formats of the paper's benchmarks.

Every record is drawn from its own random generator keyed by (seed, split,
index), so a record never depends on how many others were drawn before it.
Splits are disjoint by construction: the split name is part of the key and a
question seen in ``train`` is rejected from ``test``.

The GSM8K-format problems are designed so that a model of a few million
parameters can really learn them in a short fine-tune: choosing the right
quantity from the question and one-digit sums and differences, written with a
short worked step before ``#### N`` as in GSM8K. The MMLU-format questions ask
which of four words belongs to a category, or the value of a one-digit sum.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable

NAMES = (
    "Ava",
    "Ben",
    "Cara",
    "Dan",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivan",
    "Jude",
    "Kim",
    "Leo",
    "Mia",
    "Noah",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Vik",
    "Wes",
    "Zoe",
)
PRONOUNS = {
    name: (
        "She"
        if name in {"Ava", "Cara", "Fay", "Hana", "Jude", "Kim", "Mia", "Pia", "Rosa", "Tara", "Uma", "Zoe"}
        else "He"
    )
    for name in NAMES
}
ITEMS = (
    "apples",
    "books",
    "coins",
    "cards",
    "pens",
    "shells",
    "stamps",
    "marbles",
    "cookies",
    "stickers",
    "rocks",
    "boxes",
    "cups",
    "flowers",
    "ribbons",
    "toys",
)
CATEGORIES = {
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "black", "white"),
    "animal": ("dog", "cat", "horse", "rabbit", "tiger", "mouse", "sheep", "eagle"),
    "fruit": ("apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear"),
    "tool": ("hammer", "saw", "drill", "wrench", "shovel", "chisel", "rake", "ladder"),
    "country": ("France", "Japan", "Brazil", "Egypt", "Canada", "India", "Kenya", "Peru"),
}
LETTERS = ("A", "B", "C", "D")


SPLITS = ("train", "validation", "test")


def _rng(seed: int, split: str, index: int, kind: str) -> random.Random:
    return random.Random(f"{kind}|{split}|{seed}|{index}")


def split_of(question: str) -> str:
    """The split a question belongs to, by a hash of its text: 80% train, 10% validation, 10% test."""
    bucket = int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def _draw_in_split(
    make: Callable[[random.Random], tuple],
    rng: random.Random,
    split: str,
    key: Callable[[tuple], str] = lambda drawn: drawn[0],
) -> tuple:
    """Draw until the item falls in ``split``, so no item appears in two splits."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    for _ in range(10_000):
        drawn = make(rng)
        if split_of(key(drawn)) == split:
            return drawn
    raise RuntimeError(f"could not draw a question in split {split!r}")  # pragma: no cover


# --- GSM8K format -----------------------------------------------------------------


def _select_problem(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(NAMES)
    first, second = rng.sample(ITEMS, 2)
    a, b = rng.sample(range(2, 10), 2)
    ask_first = rng.random() < 0.5
    item, count = (first, a) if ask_first else (second, b)
    question = f"{name} has {a} {first} and {b} {second}. How many {item} does {name} have?"
    return question, f"{name} has {count} {item}.\n#### {count}"


def _sum_problem(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    question = f"{name} has {a} {item}. {PRONOUNS[name]} gets {b} more {item}. How many {item} does {name} have now?"
    return question, f"{name} has {a} + {b} = {a + b} {item}.\n#### {a + b}"


def _difference_problem(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(2, 9)
    b = rng.randint(1, a - 1)
    question = f"{name} has {a} {item}. {PRONOUNS[name]} gives away {b} {item}. How many {item} does {name} have left?"
    return question, f"{name} has {a} - {b} = {a - b} {item} left.\n#### {a - b}"


GSM8K_TEMPLATES: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    _select_problem,
    _sum_problem,
    _difference_problem,
)


def gsm8k_record(seed: int, split: str, index: int) -> dict[str, str]:
    """One problem with GSM8K's fields: ``question`` and ``answer`` ending in ``#### N``."""
    rng = _rng(seed, split, index, "gsm8k")
    template = GSM8K_TEMPLATES[index % len(GSM8K_TEMPLATES)]
    question, answer = _draw_in_split(template, rng, split)
    return {"question": question, "answer": answer}


def final_answer(answer: str) -> str:
    """The number after ``####`` in a GSM8K-format answer."""
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


# --- MMLU format ------------------------------------------------------------------


def _category_question(rng: random.Random) -> tuple[str, list[str], int, str]:
    category = rng.choice(sorted(CATEGORIES))
    right = rng.choice(CATEGORIES[category])
    others = [c for c in sorted(CATEGORIES) if c != category]
    wrong = [rng.choice(CATEGORIES[c]) for c in rng.sample(others, 3)]
    answer = rng.randrange(4)
    choices = wrong[:answer] + [right] + wrong[answer:]
    article = "an" if category[0] in "aeiou" else "a"
    return f"Which of the following is {article} {category}?", choices, answer, "categories"


def _arithmetic_question(rng: random.Random) -> tuple[str, list[str], int, str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    right = a + b
    wrong = rng.sample([v for v in range(2, 19) if v != right], 3)
    answer = rng.randrange(4)
    choices = [str(v) for v in wrong[:answer] + [right] + wrong[answer:]]
    return f"What is {a} + {b}?", choices, answer, "elementary_mathematics"


def mmlu_record(seed: int, split: str, index: int) -> dict:
    """One question with MMLU's fields: ``question``, ``subject``, ``choices`` (4), ``answer`` (0-3)."""
    rng = _rng(seed, split, index, "mmlu")
    make = _category_question if index % 2 == 0 else _arithmetic_question
    question, choices, answer, subject = _draw_in_split(
        make, rng, split, key=lambda drawn: drawn[0] + "|" + "|".join(drawn[1])
    )
    return {"question": question, "subject": subject, "choices": choices, "answer": answer}


def mmlu_prompt(record: dict) -> str:
    """MMLU's zero-shot layout as lm-eval writes it, ending in ``Answer:``."""
    lines = [record["question"].strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, record["choices"], strict=True)]
    return "\n".join(lines) + "\nAnswer:"


# --- Other benchmark formats, for probing only -----------------------------------

TOPICS = ("the sea", "a small town", "winter", "a library", "trains", "a garden", "the moon", "music")
FORMS = ("poem", "story", "letter", "summary", "list of tips", "short essay")
CONSTRAINTS = (
    "Do not use any commas.",
    "Use exactly three paragraphs.",
    "End with the word 'done'.",
    "Write the whole answer in capital letters.",
    "Include the keyword 'river' twice.",
    "Answer in fewer than 50 words.",
)


def ifeval_record(seed: int, split: str, index: int) -> dict[str, str]:
    rng = _rng(seed, split, index, "ifeval")
    prompt = f"Write a {rng.choice(FORMS)} about {rng.choice(TOPICS)}. {rng.choice(CONSTRAINTS)}"
    return {"prompt": prompt}


def mt_bench_record(seed: int, split: str, index: int) -> dict[str, list[str]]:
    rng = _rng(seed, split, index, "mt_bench")
    topic = rng.choice(TOPICS)
    first = f"Write a {rng.choice(FORMS)} about {topic}."
    second = rng.choice(
        (
            "Now rewrite it for a young child.",
            "Summarise your answer in one sentence.",
            "Add a title and explain your choice.",
            "Rewrite it without the letter e.",
        )
    )
    return {"turns": [first, second]}


PLACES = ("the north", "the coast", "the mountains", "big cities", "small villages", "the desert")
ACTIVITIES = ("cooking together", "long walks", "reading", "music festivals", "gardening", "board games")


def toxigen_record(seed: int, split: str, index: int) -> dict[str, str]:
    """A benign statement in ToxiGen's one-sentence form (the project ships no toxic text)."""
    rng = _rng(seed, split, index, "toxigen")
    return {"text": f"Many people who live in {rng.choice(PLACES)} enjoy {rng.choice(ACTIVITIES)}."}


def humaneval_record(seed: int, split: str, index: int) -> dict[str, str]:
    """A HumanEval-style prompt: a signature and a docstring, with generated names."""
    rng = _rng(seed, split, index, "humaneval")
    name = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
    action, body = rng.choice(
        (
            ("Return the sum of the even numbers in xs.", "sum(x for x in xs if x % 2 == 0)"),
            ("Return xs sorted in reverse order.", "sorted(xs, reverse=True)"),
            ("Return the number of distinct values in xs.", "len(set(xs))"),
            ("Return True if xs is a palindrome.", "list(xs) == list(xs)[::-1]"),
            ("Return the largest value in xs, or None if xs is empty.", "max(xs) if xs else None"),
        )
    )
    prompt = f'def {name}(xs: list) -> object:\n    """{action}\n    """\n    return {body}\n'
    return {"prompt": prompt}
