"""The JSON parse alone, pyarrow's reader against arrow-rs's (arro3-io), in CPU seconds.

    python bench/parse_readers.py EXPORT_FOLDER [--rounds 5] [--batch-sizes 1024,8192] [--files N]
    python bench/parse_readers.py EXPORT_FOLDER --commands [--rounds 5]   # whole conversions instead

Every data file is decompressed into pieces as the converter makes them (``gunzip_pieces``, 32 MiB),
dictionary maps are lifted as the converter lifts them, and the schema is learned once with pyarrow
(what a worker holds after its first piece). Then, in interleaved rounds (the contenders' order
rotates), each contender parses every piece in this one process, single-threaded; CPU seconds
(user + sys of the process) are summed per round and the median round is reported. Outputs are
checked to be identical (``.equals``) before anything is timed.

With ``--commands``: ``convert`` (two stages), ``convert --profile`` (one pass) and ``inspect``,
each as its own process with ``--json-reader pyarrow`` and ``arrow-rs`` in turn (the order
alternating between rounds), CPU seconds and peak memory of the process tree measured from outside
as run_benchmark.py does; medians reported.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from typing import Callable

import pyarrow as pa

from ddb_assets.exports import json_reader
from ddb_assets.exports.buffers import ByteArena, Text, gunzip_pieces
from ddb_assets.exports.decode import (_lift_dictionary_maps, _read_json, detect_dictionary_maps, merge_schemas,
                                       pin_strings, without_nulls)


def load_pieces(export: str, files: int | None, piece_bytes: int) -> list[Text]:
    paths = sorted(glob.glob(os.path.join(export, "data", "*.json.gz")))[:files]
    arena, pieces, maps = ByteArena(), [], None
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        for text, _ in gunzip_pieces(data, arena, obj=path, piece_bytes=piece_bytes):
            own = Text(bytearray(text.view()))
            if maps is None:
                maps = detect_dictionary_maps(own, 64)
            if maps:
                _lift_dictionary_maps(own, maps, path)
            pieces.append(own)
    return pieces


def learn_schema(pieces: list[Text]) -> pa.Schema:
    """The schema a worker holds after these pieces (the types of empty lists kept: pyarrow's
    reader is given it without them, as exports.decode does)."""
    known = None
    for text in pieces:
        table = _read_json(text, "bench", known and without_nulls(known))
        known = merge_schemas(known, pin_strings(table.schema))
    return known


def contenders(known: pa.Schema, batch_sizes: list[int]) -> dict[str, Callable[[Text], pa.Array]]:
    """Each parses a piece into the ``Item`` array (one chunk)."""
    explicit = without_nulls(known)
    found: dict[str, Callable[[Text], pa.Array]] = {
        "pyarrow": lambda text: _read_json(text, "bench", explicit).column("Item").combine_chunks(),
    }
    from arro3.io import read_json

    def arrow_rs(batch: int) -> Callable[[Text], pa.Array]:
        # the reader alone: no checks (what it costs, and the batch size's effect)
        return lambda text: json_reader._without_absent_empty_lists(pa.table(read_json(
            text.view(), json_reader.reader_schema(known), batch_size=batch)).column("Item").combine_chunks())

    for batch in batch_sizes:
        found[f"arrow-rs {batch}"] = arrow_rs(batch)

    def checked(text: Text) -> pa.Array:
        # the product's path: arrow-rs with every check, pyarrow's reader when one fails
        table = json_reader.read_items(text, known)
        if table is None:
            FELL_BACK.append(text)
            return found["pyarrow"](text)
        return table.column("Item").combine_chunks()

    found[f"arrow-rs {json_reader.BATCH_ROWS} checked"] = checked
    return found


FELL_BACK: list[Text] = []


def run_commands(export: str, rounds: int) -> None:
    import shutil
    import subprocess
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_benchmark import PYTHON, measure

    work = tempfile.mkdtemp(prefix="parse-readers-")
    cli = [PYTHON, "-m", "ddb_assets.cli"]
    profile = os.path.join(work, "profile.json")
    subprocess.run([*cli, "inspect", export, "--partition-by", "year", "--save-profile", profile], check=True,
                   stdout=subprocess.DEVNULL)
    commands = {"convert": ["convert", export, "{out}", "--partition-by", "year"],
                "convert one pass": ["convert", export, "{out}", "--partition-by", "year", "--profile", profile],
                "inspect": ["inspect", export, "--partition-by", "year"]}
    results: dict[tuple[str, str], list[dict]] = {}
    for round_number in range(rounds):
        for reader in ("pyarrow", "arrow-rs")[::1 if round_number % 2 == 0 else -1]:
            for name, args in commands.items():
                lake = os.path.join(work, "lake")  # a new catalog and table each time
                shutil.rmtree(lake, ignore_errors=True)
                os.makedirs(lake)
                command = [*cli, *(a.replace("{out}", os.path.join(lake, "t")) for a in args), "--json-reader", reader]
                results.setdefault((name, reader), []).append(measure(f"{name} {reader}", command))
        print(f"  (load {os.getloadavg()[0]:.2f})", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'':<26} {'median cpu s':>12} {'all rounds':<32} {'peak MiB':>9}")
    for (name, reader), runs in results.items():
        cpu = sorted(r["cpu"] for r in runs)
        print(f"{name + ' ' + reader:<26} {statistics.median(cpu):12.2f} {' '.join(f'{c:.1f}' for c in cpu):<32} "
              f"{max(r['peak_rss'] for r in runs) / 2**20:9.0f}")
    for name in commands:
        base, fast = (statistics.median(r["cpu"] for r in results[(name, reader)]) for reader in ("pyarrow", "arrow-rs"))
        print(f"{name}: arrow-rs {100 * (fast / base - 1):+.0f}% CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=None, help="only the first N data files")
    parser.add_argument("--batch-sizes", default="512,1024,2048,8192,65536")
    parser.add_argument("--piece-bytes", type=int, default=32 << 20)
    parser.add_argument("--commands", action="store_true", help="measure whole convert/inspect runs instead")
    args = parser.parse_args()
    if args.commands:
        run_commands(args.export, args.rounds)
        return

    pieces = load_pieces(args.export, args.files, args.piece_bytes)
    size = sum(len(p) for p in pieces)
    known = learn_schema(pieces)
    runs = contenders(known, [int(b) for b in args.batch_sizes.split(",")])
    print(f"{len(pieces)} pieces, {size / 1e6:,.0f} MB of JSON; load average {os.getloadavg()[0]:.2f}", flush=True)
    for name, run in runs.items():  # identical output, before anything is timed
        for text in pieces:
            got = run(text)
            want = runs["pyarrow"](text)
            assert got.equals(want), f"{name} differs from pyarrow"
    if FELL_BACK:
        print(f"checked: {len(FELL_BACK)} of {len(pieces)} pieces went to pyarrow's reader", flush=True)
        FELL_BACK.clear()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_number in range(args.rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for name in order:
            started = time.process_time()
            for text in pieces:
                runs[name](text)
            seconds[name].append(time.process_time() - started)
        print(f"round {round_number + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.2f}" for n in names)
              + f"  (load {os.getloadavg()[0]:.2f})", flush=True)
    base = statistics.median(seconds["pyarrow"])
    print(f"\n{'':<22} {'median cpu s':>12} {'min':>7} {'max':>7} {'MB/cpu-s':>9} {'vs pyarrow':>11}")
    for name in names:
        median = statistics.median(seconds[name])
        print(f"{name:<22} {median:12.2f} {min(seconds[name]):7.2f} {max(seconds[name]):7.2f} "
              f"{size / 1e6 / median:9.0f} {base / median:10.2f}x")


if __name__ == "__main__":
    main()
