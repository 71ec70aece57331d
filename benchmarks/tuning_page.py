"""``docs/results/tuning.md`` from the reports of ``--tune_lower`` (``log/tune/<Model>-<dataset>.md``): each search's
trials, its decision and the command, date and wall time it states, plus the cross-application table: each
backbone trained with the settings another backbone's search chose on the same dataset (its seed-2023 trial),
which shows whether one setting per dataset would serve all backbones.

    python benchmarks/tuning_page.py log/tune/MiNet-ml-1m-genres.md log/tune/CoNet-ml-1m-genres.md ...
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import write_page  # noqa: E402  (after the path insertion)

ROW = re.compile(r"^\| (\d+) \| (.*?) \| ([\d.]*) \| ([\d.]*) \| (\w*) \| (.*?) \|$")


def settings(label):
    """A trial's settings without its epoch schedule (the previous settings' own schedule included)."""
    return re.sub(r", (train_epochs|stopping_step)=[^,]*(?=,|$)", "", label.replace("'", ""))


def trials(report):
    """``({settings: valid AUC} of a report's seed-2023 trials, the chosen settings)``; the chosen ones are the
    previous settings when the search could not improve on them."""
    found, chosen, previous = {}, None, None
    for line in report.splitlines():
        match = ROW.match(line)
        if match and match.group(1) == "2023" and match.group(3):
            found.setdefault(settings(match.group(2)), float(match.group(3)))
            if "previous settings" in match.group(6):
                previous = settings(match.group(2))
        if line.startswith("best: "):
            chosen = settings(line[len("best: "):].split(": valid AUC")[0])
    return found, chosen or previous


def main() -> None:
    started = time.time()
    reports = {}
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            reports[os.path.basename(path)[:-3]] = f.read()
    body = ["The reports of the searches that set the shipped datasets' `per_model` sections, as `--tune_lower` wrote "
            "them (valid AUC decides; the test AUC is shown, never used).", ""]
    by_dataset = {}
    for name, report in reports.items():
        model, dataset = name.split("-", 1)
        by_dataset.setdefault(dataset, {})[model] = trials(report)
        body += [report.replace("# --tune_lower:", "## --tune_lower:"), ""]
    for dataset, models in by_dataset.items():
        body += [f"## One setting for every backbone on {dataset}?", "",
                 "Valid AUC (seed 2023) of each backbone (rows) with the settings each search chose (columns; "
                 "'-': no such trial in that backbone's search):", "",
                 "| model | " + " | ".join(f"{m}'s choice: {c}" for m, (_, c) in models.items()) + " |",
                 "|---|" + "---|" * len(models)]
        for model, (found, _) in models.items():
            cells = [f"{found[c]:.4f}" if c in found else "-" for _, c in models.values()]
            body.append(f"| {model} | " + " | ".join(cells) + " |")
        body.append("")
    print("written:", write_page("tuning", "The lower-level searches of the shipped datasets", body,
                                 time.time() - started))


if __name__ == "__main__":
    main()
