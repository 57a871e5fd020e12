"""``f5-worker``: the command line.

    f5-worker init [--json]                      run the bootstrap, print its report
    f5-worker serve [--host H] [--port P]        bootstrap, load, warm up, then the local HTTP API
    f5-worker runpod                             bootstrap, load, warm up, then the RunPod handler
    f5-worker flash-attn resolve [--env FILE.json] [--version SPEC] [--json]
    f5-worker flash-attn install [--json]        bootstrap's flash-attn step alone
    f5-worker doctor [--json]                    fingerprint, plan, what is published and active

Exit status: 0 on success (``resolve`` also when the plan is ``unsupported``: the
JSON says so), 1 when ``install`` fell back to SDPA, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, log
from .errors import ConfigError, F5WorkerError
from .runtime.fingerprint import Fingerprint
from .settings import Settings

__all__ = ["main"]


def _print(data: dict, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text)


def _fingerprint(env_file: str | None) -> Fingerprint:
    if env_file is None:
        from .runtime import probe

        return probe.detect()
    try:
        data = json.loads(Path(env_file).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read --env {env_file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"--env {env_file} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--env {env_file} must hold a JSON object")
    return Fingerprint.from_json(data)


def _plan_text(plan) -> str:
    lines = [f"status: {plan.status}" + (f" ({plan.reason})" if plan.reason else ""), f"request: {plan.request}"]
    lines += [f"  {i}. {c.filename}  [{c.source}]  {c.url}" for i, c in enumerate(plan.candidates, 1)]
    lines += ["trace:"] + [f"  {'+' if d.accepted else '-'} {d.subject}: {d.reason}" for d in plan.trace]
    return "\n".join(lines)


def _verdict_text(verdict) -> str:
    if verdict.active:
        head = f"flash-attn {verdict.version} active ({'warm: published install' if verdict.warm else verdict.source})"
    else:
        head = f"PyTorch SDPA: {verdict.reason}"
    return f"{head}\nattention: {verdict.attention}\ntook {verdict.seconds:.2f} s"


def cmd_resolve(args, settings: Settings) -> int:
    from . import net
    from .flash_attn.provision import plan_for

    from .flash_attn.resolver import VersionRequest

    if args.version:
        settings = settings.replace(flash_attn_version=args.version)
    VersionRequest.parse(settings.flash_attn_version)  # bad input fails before any probing
    fp = _fingerprint(args.env)
    with net.client(settings.download_timeout_s) as http:
        plan = plan_for(settings, fp, http)
    _print(plan.to_json(), args.json, _plan_text(plan))
    return 0


def cmd_install(args, settings: Settings) -> int:
    from .flash_attn.provision import provision

    verdict = provision(settings)
    _print(verdict.to_json(), args.json, _verdict_text(verdict))
    return 0 if verdict.active else 1


def cmd_init(args, settings: Settings) -> int:
    from . import bootstrap

    _, report = bootstrap.run(settings)  # every step in the foreground: this command is the bootstrap alone
    data = report.to_json()
    text = f"volume: {report.volume}\n" + "".join(f"warning: {w}\n" for w in report.warnings)
    text += _verdict_text(report.flash_attn) if report.flash_attn else ""
    _print(data, args.json, text)
    return 0


IMPORT_WAIT_S = 60.0  # at most this long without listening, however slow torch's import is


def cmd_serve(args, settings: Settings) -> int:
    """Listen at once (``/health`` says "initialising"), load on a thread, serve when ready."""
    import os
    import threading

    from .serving.listen import listen_plan, on_runpod
    from .worker import Worker

    where = listen_plan(os.environ, args.host, args.port)
    if where.all_interfaces and not settings.api_key and not on_runpod(os.environ):
        log.get_logger("serving").warning(
            "listening on all interfaces without an API key: anyone who reaches this port can use the worker "
            "(set F5_WORKER_API_KEY)", extra={"phase": "serve.listen", "host": where.host, "port": where.port})
    worker = Worker(settings)
    failed = threading.Event()

    def load() -> None:
        try:
            worker.load()
        except (ConfigError, F5WorkerError):
            failed.set()  # main() prints the reason below
        except BaseException:
            log.get_logger("worker").exception("the worker failed to load", extra={"phase": "worker.load"})
            failed.set()
        else:
            print(f"f5-worker: serving {worker.engine.info()['model']} on http://{where.host}:{where.port} "
                  f"(POST /runsync, /run, /v1/audio/speech; GET /health)", file=sys.stderr, flush=True)

    threading.Thread(target=load, name="f5-worker-load", daemon=True).start()
    # Imports hold the GIL: two at once each take the time of both. torch goes first (the path to ready);
    # the web stack then imports while the GPU and the disk do the load's work (measured: BENCHMARKS.md).
    worker.torch_imported.wait(IMPORT_WAIT_S)
    import uvicorn

    from .serving.api import build_app

    if where.health_port != where.port:  # RunPod's PORT_HEALTH: /ping on its own listener
        from .serving.ping import serve_ping

        serve_ping(worker, where.host, where.health_port)

    class Server(uvicorn.Server):
        async def on_tick(self, counter: int) -> bool:  # a failed load ends the process, with its reason
            return failed.is_set() or await super().on_tick(counter)

    server = Server(uvicorn.Config(build_app(worker), host=where.host, port=where.port, log_level="warning",
                                   timeout_graceful_shutdown=settings.shutdown_timeout_s))
    # On SIGTERM uvicorn stops accepting, finishes the requests in flight (at most shutdown_timeout_s), exits.
    server.run()
    if worker.state == "failed":
        print(f"f5-worker: error: {worker.error}", file=sys.stderr)
        return 2
    return 0


def cmd_runpod(args, settings: Settings) -> int:
    import importlib
    import threading

    from .worker import start

    # The SDK takes ~1.5 s to import: on a thread, it overlaps the model's load (mostly outside the GIL).
    sdk = threading.Thread(target=importlib.import_module, args=("runpod",), name="f5-worker-sdk", daemon=True)
    sdk.start()
    worker = start(settings)
    sdk.join()
    from .serving.handler import serve_runpod

    serve_runpod(worker.service, worker.settings.streaming, lambda: worker.concurrency)
    return 0


def cmd_doctor(args, settings: Settings) -> int:
    from . import net
    from .flash_attn import install
    from .flash_attn.provision import plan_for
    from .runtime import probe

    fp = probe.detect()
    layout = install.Layout(settings.root / "flash-attn")
    installs_dir = layout.installs(fp.runtime_key())
    with net.client(settings.download_timeout_s) as http:
        plan = plan_for(settings, fp, http)
    published = install.published_installs(installs_dir)
    data = {
        "worker_version": __version__,
        "settings": {k: (str(v) if isinstance(v, Path) else "(set)" if k == "api_key" and v else v)
                     for k, v in vars(settings).items()},
        "fingerprint": fp.to_json(),
        "runtime_key": fp.runtime_key(),
        "plan": plan.to_json(),
        "published": [{"wheel": p.wheel, "version": p.version, "path": str(p.path)} for p in published],
        "rejected": install.rejected(installs_dir),
        "would_activate": published[0].wheel if published and settings.flash_attn != "off" else None,
    }
    text = "\n".join(
        [f"fingerprint: {json.dumps(fp.to_json())}", f"runtime key: {fp.runtime_key()}", _plan_text(plan),
         f"published installs: {[p.wheel for p in published] or 'none'}",
         f"rejected here: {data['rejected'] or 'none'}",
         f"a start would activate: {data['would_activate'] or 'nothing (resolve and install, or SDPA)'}"]
    )
    _print(data, args.json, text)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f5-worker", description="Serverless F5-TTS worker with a verified flash-attn.")
    parser.add_argument("--version", action="version", version=f"f5-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_json(p):
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    with_json(sub.add_parser("init", help="run the bootstrap and print its report")).set_defaults(func=cmd_init)
    serve = sub.add_parser("serve", help="run the bootstrap, then serve the local HTTP API")
    serve.add_argument("--host", help="default: 0.0.0.0 when RunPod sets PORT (load balancing), else 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: $PORT (RunPod load balancing), else 8000")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("runpod", help="run the bootstrap, then the RunPod serverless handler").set_defaults(func=cmd_runpod)
    with_json(sub.add_parser("doctor", help="fingerprint, plan, published installs")).set_defaults(func=cmd_doctor)
    fa = sub.add_parser("flash-attn", help="flash-attn wheels").add_subparsers(dest="fa_command", required=True)
    resolve = with_json(fa.add_parser("resolve", help="print the plan of wheels for a runtime"))
    resolve.add_argument("--env", metavar="FILE.json", help="fingerprint to resolve for (default: this runtime)")
    resolve.add_argument("--version", dest="version", metavar="SPEC", help="auto, an exact version, or a range")
    resolve.set_defaults(func=cmd_resolve)
    with_json(fa.add_parser("install", help="resolve, fetch, verify and activate")).set_defaults(func=cmd_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The RunPod SDK reads its own flags (--rp_serve_api, --test_input...) from sys.argv.
    args, unknown = _parser().parse_known_args(argv)
    if unknown and getattr(args, "func", None) is not cmd_runpod:
        _parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        settings = Settings.from_env()
        log.configure(settings.log_format)
        return args.func(args, settings)
    except (ConfigError, F5WorkerError) as exc:
        print(f"f5-worker: error: {exc}", file=sys.stderr)
        return 2
