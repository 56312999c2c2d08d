#!/usr/bin/env python3
"""Writes N plausible customers as the old API's JSON response (or CSV) to standard output.

Used by the benchmarks: bench/import.sh and bench/run.sh.
  gen_customers.py N [--passwords] [--csv]
"""
import csv
import json
import sys

CITIES = ["Liège", "Gent", "Namur", "Mons", "Brugge", "Lille", "Bruxelles", "Antwerpen"]
NAMES = ["Lefèvre", "D'hondt", "Müller", "Garçon", "Peeters", "Noël", "Dubois", "Janssens"]


def customer(i, passwords):
    c = {
        "clcleunik": i,
        "customerNumber": f"K{i:06}",
        "groupePrice": "Pro" if i % 3 == 0 else "Détail",
        "login": f"user{i}",
        "lastName": NAMES[i % len(NAMES)],
        "firstName": f"Prénom{i}",
        "address": f"Rue de l'Église {i % 300}",
        "zipcode": str(1000 + i % 9000),
        "city": CITIES[i % len(CITIES)],
        "country": "BE",
        "phone": f"+32 2 {i % 10000000:07}",
        "cellphone": f"+32 475 {i % 1000000:06}",
        "email": f"user{i}@example.be",
        "denomination": f"Société {i} SRL" if i % 4 == 0 else "",
        "tvaNumber": f"BE0{i:09}" if i % 4 == 0 else "",
        "addedDate": f"2023-{1 + i % 12:02}-{1 + i % 28:02}",
        "addHour": f"{i % 24:02}:{i % 60:02}:{(i * 7) % 60:02}",
        "language": ["FR", "NL", "EN"][i % 3],
        "showPrice": i % 2 == 0,
        "webRemise": 12.5 if i % 5 == 0 else i % 20,
        "megawinapp_login": f"mw{i}",
        "notification_accepted": "1" if i % 2 == 0 else "0",
    }
    if passwords:
        c["password"] = f"pw-{i}-secret"
    return c


def main():
    args = sys.argv[1:]
    n = int(args[0]) if args and args[0].isdigit() else 10000
    passwords = "--passwords" in args
    rows = [customer(i, passwords) for i in range(1, n + 1)]
    if "--csv" in args:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    else:
        json.dump({"success": "true", "message": "Customers list", "result": {"customer": rows}},
                  sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
