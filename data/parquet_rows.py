"""Streams the rows of a parquet file to stdout, for memtrain-prepare.

memtrain-prepare reads corpora as lines (data/corpus_reader.cpp). A parquet
input (the Hugging Face hub's layout of WikiText, WMT16, XSUM and OpenOrca) is
turned into lines here, with pyarrow, one row group batch at a time, so a
corpus is never held in memory:

    parquet_rows.py FILE --columns question,response --optional id,system_prompt
        {"rows": 50}                                  first line: the row count
        {"question": "...", "response": "...", ...}   then one JSON object per row
    parquet_rows.py FILE --columns text --text
        {"rows": 36718}
        the value of `text` of each row, one per line (a trailing newline dropped)

A missing column, or a file pyarrow cannot read, ends with status 2 and one
line on stderr naming the file and what is wrong.
"""

import argparse
import json
import sys


def _unsupported(value):
    """A value JSON cannot hold (bytes, dates): the reader reports its type."""
    return {"unsupported parquet type": type(value).__name__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--columns", required=True, help="comma-separated columns every row needs")
    parser.add_argument("--optional", default="", help="comma-separated columns read when present")
    parser.add_argument("--text", action="store_true",
                        help="print the one column's values as lines instead of JSON objects")
    args = parser.parse_args()

    try:
        import pyarrow.parquet as pq  # imported late: --help works without pyarrow
    except ImportError:
        print(f"{args.path}: reading parquet needs pyarrow, which {sys.executable} does not have "
              "(scripts/setup installs it in the project's .venv; MEMTRAIN_PYTHON picks another "
              "Python)", file=sys.stderr)
        return 2

    try:
        parquet = pq.ParquetFile(args.path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        print(f"{args.path}: not a readable parquet file: {error}", file=sys.stderr)
        return 2
    present = parquet.schema_arrow.names
    required = [c for c in args.columns.split(",") if c]
    missing = [c for c in required if c not in present]
    if missing:
        print(f"{args.path}: no column {', '.join(repr(c) for c in missing)} "
              f"(its columns: {', '.join(present)})", file=sys.stderr)
        return 2
    if args.text and len(required) != 1:
        print("--text needs exactly one column", file=sys.stderr)
        return 2
    columns = required + [c for c in args.optional.split(",") if c and c in present]

    out = sys.stdout
    out.write(json.dumps({"rows": parquet.metadata.num_rows}) + "\n")
    for batch in parquet.iter_batches(batch_size=4096, columns=columns):
        if args.text:
            for value in batch.column(0).to_pylist():
                value = "" if value is None else str(value)
                out.write(value[:-1] if value.endswith("\n") else value)
                out.write("\n")
        else:
            for row in batch.to_pylist():
                out.write(json.dumps(row, ensure_ascii=False, default=_unsupported))
                out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader stopped early (an error in an earlier row)
        sys.exit(1)
