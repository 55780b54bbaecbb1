"""Build data/kjv-mini.jsonl: 2,000 King James Bible verses labelled by the group of
books they come from (law, wisdom, prophets, gospels, epistles).

Run once, on Debian or Ubuntu (the text comes from Debian's bible-kjv packages):

    sudo apt-get install bible-kjv bible-kjv-text
    python data/build_kjv_mini.py

The King James Version (1611) is in the public domain (Debian's copyright file for
bible-kjv-text: "The copyright for the King James Version text of the Bible is
expired"). From each group, 400 verses of at least 8 words are drawn with a fixed seed
(0); 80 of each group go to the test split. One JSON object per line:
{"text": ..., "label": ..., "split": "train" | "test", "ref": "Book chapter:verse"}.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np

GROUPS = {
    "law": ["Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy"],
    "wisdom": ["Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon"],
    "prophets": [
        *("Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah"),
        *("Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi"),
    ],
    "gospels": ["Matthew", "Mark", "Luke", "John"],
    "epistles": [
        *("Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians"),
        *("1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews"),
        *("James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude"),
    ],
}
PER_GROUP, TEST_PER_GROUP, MIN_WORDS = 400, 80, 8
OUT = Path(__file__).with_name("kjv-mini.jsonl")
HEADER = re.compile(r"^(?P<book>.+) (?P<chapter>\d+)$")
VERSE = re.compile(r"^\s*(?P<verse>\d+) (?P<text>.+)$")


def verses(book: str) -> list[tuple[str, str]]:
    """(reference, text) of every verse of a book, read from the `bible` program."""
    out = subprocess.run(["bible", "-l5000", f"{book} 1:1-999:999"], capture_output=True, text=True, check=True)
    chapter, found = None, []
    for line in out.stdout.splitlines():
        if m := HEADER.match(line):
            chapter = m["chapter"]
        elif (m := VERSE.match(line)) and chapter:
            found.append((f"{book} {chapter}:{m['verse']}", m["text"].strip()))
    if not found:
        raise SystemExit(f"no verses for {book!r}: is bible-kjv-text installed?")
    return found


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for label, books in GROUPS.items():
        pool = [(ref, text) for book in books for ref, text in verses(book) if len(text.split()) >= MIN_WORDS]
        picked = sorted(rng.choice(len(pool), PER_GROUP, replace=False))
        test = set(rng.choice(picked, TEST_PER_GROUP, replace=False).tolist())
        for i in picked:
            ref, text = pool[i]
            rows.append({"text": text, "label": label, "split": "test" if i in test else "train", "ref": ref})
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {OUT}: {len(rows)} verses, {sum(r['split'] == 'test' for r in rows)} for testing")


if __name__ == "__main__":
    main()
