"""The `asrfair` command: a thin typer layer; every command is a call into the library.

No `from __future__ import annotations` here: typer reads every command's annotations on each call, and
string annotations cost it an eval apiece (about 10 ms of every command's start-up)."""

import contextlib
import datetime as dt
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from harness.errors import HarnessError
from harness.escaping import escape_terminal

def _hide_flag_types() -> None:
    """Typer 0.2x prints a type after flags that take no value (`--resume <bool>`, `--help <bool>`), which reads
    as if they wanted one. Show nothing there, as click always did; other options keep their `<int>`, `<path>`."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "hides_flag_types", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich.hides_flag_types = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_hide_flag_types()
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Speech-recognition fairness evaluation: WER by slice, with honest uncertainty.")
noise_app = typer.Typer(no_args_is_help=True, help="Noise profiles: list, add your own recordings, preview.")
app.add_typer(noise_app, name="noise")
# Piped output (logs, CI, README captures) gets a fixed width wide enough for the slice table.
console = Console() if sys.stdout.isatty() else Console(width=120)
error_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=120)

ByOption = Annotated[Optional[list[str]], typer.Option("--by", help="Tag (or condition) to slice by; repeat for several.")]
MinSpeakers = Annotated[float, typer.Option("--min-speakers", help="Slices with fewer effective speakers ((Σ words)² / Σ words² over speakers) are small: no interval, never ranked or tested.")]
MinWords = Annotated[int, typer.Option("--min-words", help="Slices with fewer reference words (characters with --metric cer) are small.")]
Confidence = Annotated[float, typer.Option("--confidence", help="Confidence level of every interval; tests use alpha = 1 - confidence.")]
Resamples = Annotated[int, typer.Option("--resamples", help="Least number of permutations for tests over speakers (raised for larger families).")]
Metric = Annotated[str, typer.Option("--metric", help="Rate to report, rank and test: wer, or cer for scripts written without spaces.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the permutation tests.")]


def _fail(error: HarnessError) -> None:
    error_console.print(Text.assemble(("error:", "bold red"), " ", escape_terminal(error, multiline=True)), soft_wrap=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _writing(target: object, option: str):
    """An output that cannot be written (a file where a folder belongs, no permission, a full disk) is an
    error naming the path and the option to change, not a traceback."""
    from harness.errors import OutputError

    try:
        yield
    except OSError as exc:
        where = exc.filename or target
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = f"{where} is a file where a folder is needed"
        else:
            reason = f"cannot write {where} ({exc.strerror or exc})"
        raise OutputError(f"{reason}. Choose another {option} (a folder you can write to, with free space).") from exc


def _say(message: object, *, to: Console | None = None) -> None:
    """Print a message that holds user values (paths, ids, tags): never markup, controls made visible."""
    (to or error_console).print(escape_terminal(message, multiline=True), soft_wrap=True)


def _column_map(id_column: str, audio_column: str, text_column: str, speaker_column: str, tag_columns: Optional[str], missing_value: Optional[list[str]]):
    from harness.manifest import ColumnMap

    tags = tuple(t.strip() for t in tag_columns.split(",") if t.strip()) if tag_columns else None
    return ColumnMap(id=id_column, audio=audio_column, text=text_column, speaker=speaker_column, tags=tags, missing_values=("", *(missing_value or [])))


IdColumn = Annotated[str, typer.Option("--id-column", help="Field holding the utterance id.")]
AudioColumn = Annotated[str, typer.Option("--audio-column", help="Field holding the audio path (relative to the manifest).")]
TextColumn = Annotated[str, typer.Option("--text-column", help="Field holding the reference transcript.")]
SpeakerColumn = Annotated[str, typer.Option("--speaker-column", help="Field holding the speaker id.")]
TagColumns = Annotated[Optional[str], typer.Option("--tag-columns", help="Comma-separated fields to use as tags (default: all other columns).")]
MissingValue = Annotated[Optional[list[str]], typer.Option("--missing-value", help="Tag value meaning 'not given' (e.g. NA); repeatable.")]
Encoding = Annotated[str, typer.Option("--encoding", help="Text encoding of a JSON/CSV/TSV manifest, e.g. cp1252 or latin-1 (a UTF-8 byte-order mark is always accepted).")]


@app.command()
def validate(
    manifest: Annotated[str, typer.Argument(help="Manifest: .jsonl/.json, .csv, .tsv, .parquet, a folder written by save_to_disk, or hf://owner/name.")],
    id_column: IdColumn = "id", audio_column: AudioColumn = "audio", text_column: TextColumn = "text",
    speaker_column: SpeakerColumn = "speaker", tag_columns: TagColumns = None, missing_value: MissingValue = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Do not require audio (for replayed hypotheses).")] = False,
    encoding: Encoding = "utf-8",
) -> None:
    """Check a manifest and list every problem; exit 2 if there is any."""
    from harness.manifest import load_manifest
    from harness.errors import ManifestError

    try:
        loaded = load_manifest(manifest, columns=_column_map(id_column, audio_column, text_column, speaker_column, tag_columns, missing_value), require_audio=not no_audio, encoding=encoding)
    except ManifestError as error:
        error_console.print(Text.assemble((f"{len(error.problems)} problem(s)", "bold red"), " in ", escape_terminal(manifest), ":"), soft_wrap=True)
        for problem in error.problems:
            _say(f"  - {problem}")
        raise typer.Exit(code=2)
    except HarnessError as error:
        _fail(error)
    import pyarrow.compute as pc

    speakers = pc.count_distinct(loaded.table.column("speaker")).as_py()  # a column count: no object per utterance
    _say(f"{manifest}: {len(loaded)} utterances, {speakers} speakers, tags: {', '.join(loaded.tag_names) or 'none'}. No problems found.", to=console)


@app.command()
def run(
    manifest: Annotated[str, typer.Argument(help="Manifest: .jsonl/.json, .csv, .tsv, .parquet, a folder written by save_to_disk, or hf://owner/name.")],
    backend: Annotated[str, typer.Option("--backend", help="ASR backend (see `asrfair backends`), or package.module:Class.")] = "pocketsphinx",
    backend_arg: Annotated[Optional[list[str]], typer.Option("--backend-arg", help="Backend option KEY=VALUE; repeatable.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Utterances per backend call (default 16, or the backend's concurrency if larger).")] = None,
    normalizer: Annotated[str, typer.Option("--normalizer", help="Text normaliser: basic (every script, NFKC, case-folded), basic-fold-diacritics, ascii (sclite-compatible), whisper-english, none.")] = "basic",
    seed: Annotated[int, typer.Option("--seed", help="Run seed; every random draw derives from (seed, utterance, condition).")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default reports/<run-id>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    no_retry_failed: Annotated[bool, typer.Option("--no-retry-failed", help="On --resume, keep utterances that failed for a retryable reason (rate limit, timeout) instead of sending them again.")] = False,
    cache: Annotated[bool, typer.Option("--cache", help="Reuse transcripts of the same audio, condition and backend from the transcript cache, and add new ones.")] = False,
    cache_file: Annotated[Optional[Path], typer.Option("--cache-file", help="Transcript cache file (default $ASRFAIR_HOME/transcripts.sqlite).")] = None,
    profile: Annotated[Optional[list[str]], typer.Option("--profile", help="Noise profile name or YAML path; repeatable.")] = None,
    snr: Annotated[Optional[str], typer.Option("--snr", help="Comma-separated SNRs in dB for additive noise, e.g. 20,10,5,0.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Threads preparing audio ahead of the backend; with --executor ray, transcription actors.")] = 2,
    executor: Annotated[str, typer.Option("--executor", help="Where the work runs: threads (here) or ray (a Ray cluster; pip install 'asrfair[ray]').")] = "threads",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to use with --executor ray (e.g. ray://head:10001 or auto; default: RAY_ADDRESS, else a local one).")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option("--gpus-per-worker", min=0, help="GPUs per transcription actor with --executor ray (default: 1 for a GPU backend on a cluster with GPUs, else 0).")] = None,
    by: ByOption = None,
    cross: Annotated[bool, typer.Option("--cross", help="With several --by, also report their intersections.")] = False,
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
    id_column: IdColumn = "id", audio_column: AudioColumn = "audio", text_column: TextColumn = "text",
    speaker_column: SpeakerColumn = "speaker", tag_columns: TagColumns = None, missing_value: MissingValue = None,
    encoding: Encoding = "utf-8",
    max_duration_s: Annotated[float, typer.Option("--max-duration-s", help="Longest audio per utterance in seconds; a longer one fails with the reason (0: no limit).")] = 1800.0,
    max_reference_words: Annotated[int, typer.Option("--max-reference-words", help="Longest reference per utterance in words; a longer one fails with the reason (0: no limit).")] = 20000,
    progress_every_s: Annotated[float, typer.Option("--progress-every-s", min=0, help="When stderr is not a terminal, print a progress line this often (rate, ETA, running WER).")] = 30.0,
) -> None:
    """Transcribe a manifest with a backend (under noise conditions, if given), score it, and print WER by slice."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from harness.backends import BACKENDS, BackendFactory, load_backend, parse_backend_args
    from harness.executors import get_executor
    from harness.manifest import load_manifest
    from harness.progress import ProgressLog
    from harness.runner import build_conditions, run_evaluation

    out_dir = out or Path("reports") / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{backend}"
    stop: _StopRequest | None = None
    try:
        if backend not in BACKENDS:
            load_backend(backend)  # a mistyped name is the first thing to say (with its "Did you mean"), before the manifest
        snrs = _parse_snrs(snr)
        profiles = _load_profiles(profile or [])
        conditions = build_conditions(profiles, snrs)
        options = parse_backend_args(backend_arg or [])
        columns = _column_map(id_column, audio_column, text_column, speaker_column, tag_columns, missing_value)
        loaded = load_manifest(manifest, columns=columns, require_audio=backend != "replay", encoding=encoding)
        transcript_cache = _open_cache(cache_file) if cache or cache_file else None
        runner = get_executor(executor, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker)
        factory = BackendFactory(name=backend, options=options)
        # Threads use one backend, built here so a bad option is said before anything runs; Ray
        # workers each build their own from the factory.
        engine = factory if executor == "ray" else factory.build()
        # A live bar on a terminal; in a log (CI, nohup, 2>file) a bar shows nothing, so plain periodic lines instead.
        live = sys.stderr.isatty()
        log = None if live else ProgressLog(lambda line: _say(line), every_s=progress_every_s)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=error_console, transient=True, disable=not live) as bar, _graceful_interrupt() as stop:
            task = bar.add_task(escape(backend), total=len(loaded) * len(conditions))

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
                if log is not None:
                    log.update(done, total)

            summary = run_evaluation(
                loaded, engine, out_dir=out_dir, normalizer=normalizer, seed=seed, batch_size=batch_size,
                conditions=conditions, resume=resume, retry_failed=not no_retry_failed, cache=transcript_cache, prep_workers=workers, backend_options=options,
                executor=runner,
                progress=progress, stop_requested=stop.is_set, on_batch=None if log is None else log.rows,
                max_duration_s=max_duration_s if max_duration_s != 0 else None, max_reference_words=max_reference_words if max_reference_words != 0 else None,
            )
            if log is not None:
                log.finish()
    except KeyboardInterrupt:
        summary = None
    except HarnessError as error:
        _fail(error)
    if summary is None or summary.stopped_early:
        _say(f"interrupted; finished batches are saved. Continue with the same command plus --resume --out {out_dir}.")
        raise typer.Exit(code=143 if stop is not None and stop.signal_name == "SIGTERM" else 130)
    for note in summary.notes:
        _say(note)
    extra = "".join([f", {summary.n_retried} retried" if summary.n_retried else "", f", {summary.n_cached} from the cache" if summary.n_cached else ""])
    _say(f"{summary.n_written} utterance-conditions transcribed in {summary.seconds:.1f} s ({summary.n_done_before} already done, {summary.n_failed} failed{extra}). Run: {summary.out_dir}")
    if by:
        try:
            _report(summary.out_dir, by, cross=cross, min_speakers=min_speakers, min_words=min_words, formats="md,csv,json")
        except HarnessError as error:
            _fail(error)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `asrfair run`.")],
    by: ByOption = None,
    cross: Annotated[bool, typer.Option("--cross", help="With several --by, also report their two-way intersections.")] = False,
    format: Annotated[str, typer.Option("--format", help="Comma-separated outputs: md, html, csv, json.")] = "md,csv,json",
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
    confidence: Confidence = 0.95,
    metric: Metric = "wer",
    resamples: Resamples = 2000,
    seed: SeedOption = 0,
    condition: Annotated[Optional[str], typer.Option("--condition", help="Condition key for the slice table (default: clean).")] = None,
) -> None:
    """WER by slice with speaker-clustered intervals and tests of disparity; writes report.md/.csv/.json (and .html) into the run directory."""
    try:
        _report(run_dir, by or [], cross=cross, min_speakers=min_speakers, min_words=min_words, formats=format, resamples=resamples, seed=seed, condition=condition, confidence=confidence, metric=metric)
    except HarnessError as error:
        _fail(error)


def _report(run_dir: Path, by: list[str], *, cross: bool, min_speakers: float, min_words: int, formats: str, resamples: int = 2000, seed: int = 0, condition: str | None = None, confidence: float = 0.95, metric: str = "wer") -> None:
    from harness.report import ReportOptions, build_report, print_report, write_report

    options = ReportOptions(by=tuple(by), cross=cross, min_speakers=min_speakers, min_words=min_words, n_resamples=resamples, seed=seed, condition=condition, confidence=confidence, metric=metric)
    built = build_report(run_dir, options)
    print_report(built, console)
    removed: list[Path] = []
    with _writing(run_dir, "the run folder"):
        written = write_report(built, run_dir, formats=[f.strip() for f in formats.split(",") if f.strip()], on_removed=removed.append)
    _say("wrote " + ", ".join(str(p) for p in written))
    if removed:
        _say("removed " + ", ".join(str(p) for p in removed) + " from an earlier report (a report's files are replaced together, so they never mix two slicings)")


@app.command()
def card(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `asrfair run`.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Directory for card.md and card.html (default: the run directory).")] = None,
    by: ByOption = None,
    cross: Annotated[bool, typer.Option("--cross", help="With several --by, also report their two-way intersections.")] = False,
    labels_source: Annotated[str, typer.Option("--labels-source", help="Where the slice labels came from, e.g. self-reported or annotated.")] = "not stated",
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
    confidence: Confidence = 0.95,
    metric: Metric = "wer",
    resamples: Resamples = 2000,
    seed: SeedOption = 0,
    condition: Annotated[Optional[str], typer.Option("--condition", help="Condition key for the slice tables (default: clean).")] = None,
) -> None:
    """The performance section of a service card (card.md, card.html): WER by slice for publication, small slices suppressed."""
    from harness.report import ReportOptions, build_report
    from harness.report.card import write_card

    try:
        options = ReportOptions(by=tuple(by or []), cross=cross, min_speakers=min_speakers, min_words=min_words, n_resamples=resamples, seed=seed, condition=condition, confidence=confidence, metric=metric)
        built = build_report(run_dir, options)
        with _writing(out or run_dir, "--out"):
            written = write_card(built, out or run_dir, labels_source=labels_source)
    except HarnessError as error:
        _fail(error)
    _say("wrote " + ", ".join(str(p) for p in written))


@app.command()
def slices(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `asrfair run`.")],
    depth: Annotated[int, typer.Option("--depth", help="Most tags combined in one slice: 1, 2 or 3.")] = 2,
    tags: Annotated[Optional[str], typer.Option("--tags", help="Comma-separated tags to search (default: every tag of the run).")] = None,
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
    fdr: Annotated[float, typer.Option("--fdr", help="False discovery rate over every slice tried (Benjamini-Hochberg).")] = 0.05,
    confidence: Confidence = 0.95,
    metric: Metric = "wer",
    resamples: Resamples = 2000,
    seed: SeedOption = 0,
    condition: Annotated[Optional[str], typer.Option("--condition", help="Condition key to search (default: clean).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write slices.json and slices.md (default: the run directory).")] = None,
) -> None:
    """Find where the model fails: every combination of tag values, tested against overall WER, ranked by excess errors."""
    from harness.report.discovery import DiscoveryOptions, discover_run, print_discovery, write_discovery

    try:
        tag_names = tuple(t.strip() for t in tags.split(",") if t.strip()) if tags else None
        options = DiscoveryOptions(tags=tag_names, max_depth=depth, min_speakers=min_speakers, min_words=min_words, n_resamples=resamples, seed=seed, fdr=fdr, condition=condition, confidence=confidence, metric=metric)
        result = discover_run(run_dir, options)
        print_discovery(result, console)
        with _writing(out or run_dir, "--out"):
            written = write_discovery(result, out or run_dir)
    except HarnessError as error:
        _fail(error)
    _say("wrote " + ", ".join(str(p) for p in written))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run A, the baseline: a directory written by `asrfair run`.")],
    run_b: Annotated[Path, typer.Argument(help="Run B, compared with A: a run of the same manifest and normaliser.")],
    by: ByOption = None,
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
    confidence: Confidence = 0.95,
    metric: Metric = "wer",
    resamples: Resamples = 2000,
    seed: SeedOption = 0,
    condition: Annotated[Optional[str], typer.Option("--condition", help="Condition key to compare (default: clean).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write comparison.json and comparison.md (default: run B's directory).")] = None,
) -> None:
    """Compare two runs on the same utterances: WER change (B - A) overall and per slice, and whether the worst-best gap shrank."""
    from harness.report.compare import compare_runs, print_comparison, write_comparison

    try:
        result = compare_runs(run_a, run_b, by=by or [], min_speakers=min_speakers, min_words=min_words, n_resamples=resamples, seed=seed, condition=condition, confidence=confidence, metric=metric)
        print_comparison(result, console)
        with _writing(out or run_b, "--out"):
            written = write_comparison(result, out or run_b)
    except HarnessError as error:
        _fail(error)
    _say("wrote " + ", ".join(str(p) for p in written))


@app.command()
def rescore(
    run_dir: Annotated[Path, typer.Argument(help="A complete run directory written by `asrfair run`.")],
    normalizer: Annotated[str, typer.Option("--normalizer", help="Text normaliser: basic, basic-fold-diacritics, ascii, whisper-english, none.")],
    out: Annotated[Path, typer.Option("--out", help="New run directory for the re-scored rows.")],
    by: ByOption = None,
    min_speakers: MinSpeakers = 8.0,
    min_words: MinWords = 100,
) -> None:
    """Re-score a run's stored hypotheses with another normaliser, without transcribing again."""
    from harness.rescore import rescore_run

    try:
        summary = rescore_run(run_dir, normalizer=normalizer, out_dir=out)
    except HarnessError as error:
        _fail(error)
    wer = lambda value: "–" if value is None else f"{value:.2%}"  # noqa: E731
    _say(f"re-scored {summary.n_rescored} of {summary.n_rows} rows with normaliser {normalizer}: WER {wer(summary.wer_before)} -> {wer(summary.wer_after)}. Run: {summary.out_dir}")
    if by:
        _report(summary.out_dir, by, cross=False, min_speakers=min_speakers, min_words=min_words, formats="md,csv,json")


@app.command()
def backends() -> None:
    """List every backend (built-in and plugins) with its options and whether what it needs is installed."""
    from harness.backends import list_backends

    for info in list_backends():
        if info.error:
            state = f"cannot load: {info.error}"
        elif info.missing:
            state = f"not installed (missing {', '.join(info.missing)}; pip install 'asrfair[{info.extra}]')" if info.extra else f"not installed (missing {', '.join(info.missing)})"
        else:
            state = "installed"
        source = "" if info.source == "built-in" else f" [plugin from {info.source}: {info.target}]"
        _say(f"{info.name}{source}: {state}", to=console)
        if info.summary:
            _say(f"  {info.summary}", to=console)
        for option in info.options:
            default = "" if option.default is None else f" (default {option.default})"
            _say(f"    {option.name}{default}: {option.help}", to=console)


@app.command()
def serve(
    backend: Annotated[str, typer.Option("--backend", help="Local backend to serve (see `asrfair backends`), or package.module:Class.")] = "pocketsphinx",
    backend_arg: Annotated[Optional[list[str]], typer.Option("--backend-arg", help="Backend option KEY=VALUE; repeatable.")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one (printed at start).")] = 8000,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="Model name clients send (default: the backend's name).")] = None,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Require 'Authorization: Bearer KEY' with the key held in this environment variable.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Most requests transcribed in one backend call.")] = 16,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0, help="How long a request waits for others to share its batch.")] = 10.0,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload accepted; larger ones get HTTP 413.")] = 25.0,
) -> None:
    """Serve a local backend as an OpenAI-compatible transcription API (POST /v1/audio/transcriptions)."""
    import logging
    import os

    from harness.backends import load_backend, parse_backend_args
    from harness.errors import ConfigError
    from harness.serve import ServeOptions, bind_socket, create_app, serve_forever, url_of

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        _fail(ConfigError("asrfair serve needs aiohttp. Install it with `pip install 'asrfair[serve]'`."))
    engine = None
    try:
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is empty or unset. Export the key first, e.g. export {api_key_env}=....")
        engine = load_backend(backend, parse_backend_args(backend_arg or []))
        options = ServeOptions(model_name=model_name or engine.name, api_key=api_key, max_upload_bytes=int(max_upload_mb * 1024 * 1024), batch_size=batch_size, max_wait_s=max_wait_ms / 1000)
        application = create_app(engine, options)
        sock = bind_socket(host, port)
    except HarnessError as error:
        if engine is not None:
            engine.close()
        _fail(error)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    url = url_of(sock)

    def ready(_message: str) -> None:
        print(f"serving {engine.name} as model {options.model_name!r} at {url} (POST {url}/audio/transcriptions); Ctrl-C to stop", flush=True)

    try:
        serve_forever(application, sock, on_ready=ready)
    finally:
        engine.close()


def _open_cache(path: Optional[Path]):
    from harness.cache import TranscriptCache, default_cache_path

    return TranscriptCache(path or default_cache_path())


@noise_app.command("list")
def noise_list() -> None:
    """Show every profile in lookup order: ./noise_profiles, $ASRFAIR_HOME/noise_profiles, built-in."""
    from rich.table import Table

    from harness.noise import list_profiles

    table = Table("name", "from", "SNR grid", "description", title="Noise profiles", title_justify="left")
    for info in list_profiles():
        description = escape_terminal(f"error: {info.error}", style="red") if info.error else escape_terminal(info.description)
        name = f"{info.name} (shadowed)" if info.shadowed else info.name
        where = info.location if info.location == "built-in" else f"{info.location}: {info.path}"
        table.add_row(escape_terminal(name), escape_terminal(where), {True: "yes", False: "no", None: "?"}[info.uses_snr], description)
    console.print(table)


@noise_app.command("add")
def noise_add(
    paths: Annotated[list[Path], typer.Argument(help="Recordings or folders of recordings (any format, rate, channels).")],
    name: Annotated[str, typer.Option("--name", help="Profile name, used as --profile NAME.")],
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Where to write NAME.yaml (default $ASRFAIR_HOME/noise_profiles).")] = None,
    description: Annotated[Optional[str], typer.Option("--description", help="One line saying what the recordings are.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing profile of that name.")] = False,
) -> None:
    """Turn your own noise recordings into a profile that adds them at the --snr levels of a run."""
    from harness.noise import add_recordings

    try:
        with _writing(directory or "the profiles folder", "--dir"):
            written = add_recordings(paths, name=name, directory=directory, description=description, overwrite=force)
    except HarnessError as error:
        _fail(error)
    _say(f"wrote profile {name!r} to {written}. Use it with: asrfair run MANIFEST --profile {name} --snr 20,10,5,0", to=console)


@noise_app.command("preview")
def noise_preview(
    name: Annotated[str, typer.Argument(help="Profile name or YAML path.")],
    manifest: Annotated[str, typer.Option("--manifest", help="Manifest holding the utterance.")],
    utterance: Annotated[str, typer.Option("--utterance", help="Utterance id.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="WAV or FLAC file (or a folder) to write; default reports/previews/PROFILE-UTTERANCE[-SNRdB].wav.")] = None,
    snr: Annotated[Optional[str], typer.Option("--snr", help="SNR in dB (for profiles that add noise).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed: the same seed gives the audio that run used.")] = 0,
    rate: Annotated[int, typer.Option("--rate", help="Sample rate in Hz (the backend's; pocketsphinx and Whisper use 16000).")] = 16000,
) -> None:
    """Write the audio an utterance gets under a profile, so a person can listen to it."""
    from harness.audio import write_audio
    from harness.manifest import load_manifest
    from harness.errors import ConfigError, OutputError
    from harness.noise import load_profile, preview, preview_path
    from harness.runner import audio_loader, babble_pool_for

    try:
        snrs = _parse_snrs(snr)
        if len(snrs) > 1:
            raise ConfigError(f"--snr {snr!r}: preview takes one SNR. Give a single value, e.g. --snr 5.")
        loaded = load_manifest(manifest)
        chosen = loaded.by_id().get(utterance)
        if chosen is None:
            raise ConfigError(f"--utterance {utterance!r} is not in {manifest}. Ids look like {[u.id for u in loaded.utterances[:3]]}.")
        profile = load_profile(name)
        load = audio_loader(rate)
        audio, records = preview(profile, load(chosen).copy(), rate, snr_db=snrs[0] if snrs else None, seed=seed, utterance_id=chosen.id, babble_pool=babble_pool_for(chosen.id, list(loaded), load))
        output = preview_path(output, profile=profile.name, utterance_id=chosen.id, snr_db=snrs[0] if snrs else None)
        try:
            write_audio(output, audio, rate)
        except OSError as exc:
            raise OutputError(f"cannot write {output} ({exc.strerror or exc}). Give another -o path you can write to.") from exc
    except HarnessError as error:
        _fail(error)
    applied = "; ".join(", ".join(f"{k}={v}" for k, v in r.items() if k in ("type", "step", "file", "offset_s", "snr_db_target", "snr_db_measured", "target_snr_db", "measured_snr_db")) for r in records)
    _say(f"wrote {output} ({len(audio) / rate:.2f} s at {rate} Hz). Applied: {applied}", to=console)


class _StopRequest(threading.Event):
    """Set by the first Ctrl-C or SIGTERM; remembers which, for the exit code (130 or 143)."""

    signal_name: str | None = None


@contextlib.contextmanager
def _graceful_interrupt():
    """First Ctrl-C or SIGTERM (kill, systemd, docker stop, a CI timeout): finish the batch in hand, mark the
    run interrupted and stop (native decoders can swallow KeyboardInterrupt). A second one stops at once;
    committed batches are safe either way."""
    stop = _StopRequest()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signal_name = signal.Signals(signum).name
        stop.set()
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        _say(f"{stop.signal_name}: stopping after the current batch; {again} again to stop now (finished batches are saved either way)")

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _parse_snrs(text: str | None) -> list[float]:
    if not text:
        return []
    from harness.noise import parse_snr_values

    return list(parse_snr_values(text))


def _load_profiles(names: list[str]):
    if not names:
        return []
    from harness.noise import load_profile

    return [load_profile(name) for name in names]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
