"""A synthetic shop with known structure: a second, different catalogue for the export stage.

    python -m export.examples.shop [OUT]   # default export/work/shop: products.jsonl + orders.csv
    python -m export all --catalog OUT/products.jsonl --interactions OUT/orders.csv --id-field sku \\
        --text-fields name,description,department --title-field name --user-field customer \\
        --item-field sku --time-field ordered_at --holdout-users 0.1 --work W --out B

What makes it different from MovieLens: products, not films; English descriptions written from each
department's words; ids that are SKUs; ISO 8601 times. What is known: each customer shops in one or
two departments (their taste), and within a department some products sell far more than others (a
Zipf law over a rank hidden from the text). So text alone can find a customer's departments (their
words) but not which products sell; interactions teach that, and a model fitted to them should beat
both popularity and the text.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEPARTMENTS = {
    "garden": ("spade rake hose trowel pruner seed compost planter shears wheelbarrow", "outdoor soil lawn flowers"),
    "kitchen": ("pan skillet kettle knife whisk colander grater blender toaster saucepan", "cooking baking meals chef"),
    "music": ("guitar ukulele drum keyboard violin strings capo metronome amplifier harmonica", "play songs band"),
    "running": ("shoe sneaker shorts vest socks bottle armband headlamp jacket cap", "marathon trail jog fitness"),
    "camping": ("tent lantern sleeping-bag stove hammock compass backpack tarp flask mat", "hiking outdoors night"),
    "office": ("stapler notebook pen folder lamp chair desk organiser binder calculator", "work paper study"),
    "baby": ("pram cot bottle bib rattle blanket nappy sling monitor teether", "newborn infant toddler gentle"),
    "pets": ("collar leash bowl kibble scratcher litter bed toy brush aquarium", "dog cat puppy kitten"),
    "games": ("chess puzzle dice cards boardgame jigsaw dominoes marbles quiz tiles", "family play strategy party"),
    "bathroom": ("towel soap shampoo razor toothbrush sponge mirror robe scale rug", "shower clean fresh spa"),
    "lighting": ("bulb lamp lantern spotlight chandelier strip nightlight torch sconce dimmer", "bright warm led"),
    "tools": ("hammer drill screwdriver wrench saw pliers level clamp chisel sander", "diy repair build workshop"),
}
ADJECTIVES = "classic compact deluxe durable essential handy large light modern premium small sturdy".split()
PRODUCTS_PER_DEPARTMENT = 120
CUSTOMERS = 3000
ORDERS_PER_CUSTOMER = (6, 30)
ZIPF = 1.1  # how steeply sales fall with a product's hidden rank in its department


def make_shop(seed: int = 0) -> tuple[list[dict], list[tuple[str, str, str]], dict]:
    """(products, orders as (customer, sku, ISO time), facts); the same seed gives the same shop."""
    rng = random.Random(seed)
    products, by_department = [], {}
    for department, (nouns, themes) in DEPARTMENTS.items():
        skus = []
        for i in range(PRODUCTS_PER_DEPARTMENT):
            noun = rng.choice(nouns.split()).replace("-", " ")
            words = rng.sample(themes.split(), 2)
            sku = f"{department[:3].upper()}-{i:04d}"
            products.append({"sku": sku, "name": f"{rng.choice(ADJECTIVES).title()} {noun}",
                             "description": f"A {rng.choice(ADJECTIVES)} {noun} for {words[0]} and {words[1]}.",
                             "department": department, "price": round(rng.uniform(3, 300), 2)})
            skus.append(sku)
        rng.shuffle(skus)  # the hidden popularity rank: unrelated to the text
        by_department[department] = skus
    weights = [1 / (rank + 1) ** ZIPF for rank in range(PRODUCTS_PER_DEPARTMENT)]
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    orders = []
    for customer in range(CUSTOMERS):
        taste = rng.sample(list(DEPARTMENTS), rng.choice((1, 2)))
        when = start + timedelta(days=rng.uniform(0, 300))
        bought: set[str] = set()
        for _ in range(rng.randint(*ORDERS_PER_CUSTOMER)):
            department = rng.choice(taste)
            sku = rng.choices(by_department[department], weights)[0]
            if sku in bought:
                continue
            bought.add(sku)
            when += timedelta(hours=rng.uniform(1, 200))
            orders.append((f"cust-{customer:05d}", sku, when.isoformat(timespec="seconds")))
    facts = {"seed": seed, "departments": len(DEPARTMENTS), "products": len(products), "customers": CUSTOMERS,
             "orders": len(orders), "zipf": ZIPF, "tastes": "1 or 2 departments per customer"}
    return products, orders, facts


def write_files(out: Path, seed: int = 0) -> tuple[Path, Path]:
    products, orders, facts = make_shop(seed)
    out.mkdir(parents=True, exist_ok=True)
    catalog, events = out / "products.jsonl", out / "orders.csv"
    catalog.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    with open(events, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "sku", "ordered_at"])
        writer.writerows(orders)
    (out / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    return catalog, events


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    catalog, events = write_files(Path(args[0]) if args else Path("export/work/shop"))
    print(f"wrote {catalog} and {events}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
