"""The ptcli command line: core commands, plus each plugin's commands, loaded lazily.

``ptcli --help`` lists plugin commands from their declarations (name and one-line help) and
imports no plugin code beyond the plugins' small top-level modules; a command's own module
(and torch) is imported only when that command runs or shows its own help. Errors raised as
ptcli.errors exceptions become one line on stderr (or a JSON object on stdout with --json)
and an exit code: 2 for usage errors, 1 for runtime failures.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from ptcli import __version__
from ptcli.cli._click import Abort, ClickException, Context, Exit, HelpFormatter, UsageError
from ptcli.errors import PtcliError, without_worker_traceback
from ptcli.output import emit_json, error_line, stdout_to_nowhere, warn
from ptcli.plugins.recipe import Command, load_ref

RECIPES_PANEL = "Recipes"


class LazyCommand(TyperCommand):
    """Stands in for a plugin command in listings; resolves to the real command when used."""

    def __init__(self, spec: Command, recipe=None) -> None:
        super().__init__(name=spec.name, help=spec.help, short_help=spec.help)
        self.spec, self.recipe = spec, recipe

    def load(self) -> TyperCommand:
        if self.spec.target is None:  # the command the core derives from the recipe's predictor
            from ptcli.cli.derived import predictor_command

            function = predictor_command(self.recipe, self.spec)
        else:
            function = load_ref(self.spec.target)
        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
        help_text = None if function.__doc__ else self.spec.help
        app.command(name=self.spec.name, help=help_text, short_help=self.spec.help)(function)
        command = typer.main.get_command(app)
        command.name = self.spec.name
        return command


class PtcliGroup(TyperGroup):
    """The root command: core commands plus a LazyCommand for each loaded plugin command."""

    def __init__(self, **kwargs: Any) -> None:
        from ptcli.plugins import get_plugins

        super().__init__(**kwargs)
        for command, recipe, _plugin in get_plugins().commands.values():
            self.add_command(LazyCommand(command, recipe))

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Core commands, then the recipes' commands, each under its own heading."""
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        commands = [(name, c) for name, c in commands if c is not None and not c.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        for title, lazy in (("Commands", False), (RECIPES_PANEL, True)):
            rows = [(name, c.get_short_help_str(limit)) for name, c in commands if isinstance(c, LazyCommand) == lazy]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        options = args[: args.index("--")] if "--" in args else args
        ctx.meta["ptcli.json"] = "--json" in options
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, LazyCommand):
            command = command.load()
        if command is not None:
            refuse_options_as_values(command, rest)
        return name, command, rest

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except PtcliError as exc:
            report_error(without_worker_traceback(str(exc)), exc.exit_code, as_json=ctx.meta.get("ptcli.json", False))
            ctx.exit(exc.exit_code)
        except UsageError as exc:
            if not ctx.meta.get("ptcli.json"):
                raise
            report_error(exc.format_message(), exc.exit_code, as_json=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            from ptcli.errors import Terminated

            code = 143 if isinstance(exc, Terminated) else 130
            report_error("terminated" if code == 143 else "interrupted", code, as_json=ctx.meta.get("ptcli.json", False))
            ctx.exit(code)
        except (Exit, Abort, ClickException):
            raise
        except BrokenPipeError:
            raise  # main() ends quietly: the reader (`| head -1`) has what it wanted
        except Exception as exc:  # the net under plugin code, built-in recipes' included
            if _CTRL_C["seen"]:
                report_error("interrupted", 130, as_json=ctx.meta.get("ptcli.json", False))
                ctx.exit(130)
            if os.environ.get("PTCLI_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}:
                import traceback

                traceback.print_exc()
            report_error(crash_message(exc, ctx.invoked_subcommand), 1, as_json=ctx.meta.get("ptcli.json", False))
            ctx.exit(1)


def refuse_options_as_values(command, args: list[str]) -> None:
    """Click gives an option the next word as its value even when that word is another of the
    command's options (`--mot --checkpoint CK` took "--checkpoint" for the file and CK for an
    input); here that is a usage error naming both."""
    takes_value, names = set(), set()
    for param in command.params:
        opts = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
        names.update(opts)
        if getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count:
            takes_value.update(opts)
    for word, following in zip(args, args[1:]):
        if word == "--":
            return
        if word in takes_value and following.split("=", 1)[0] in names:
            from ptcli.errors import UsageError as BadUsage

            raise BadUsage(f"{word} needs a value, and the next word is the option {following.split('=', 1)[0]}")


def crash_message(exc: BaseException, command: str | None) -> str:
    """``<plugin> (<recipe>) failed: <Type>: <message> (rerun with PTCLI_DEBUG=1 ...)``: the
    plugin whose code raised (the innermost traceback frame in one of its modules), else the
    plugin of the command that ran, else ptcli itself."""
    from ptcli.errors import one_line
    from ptcli.plugins import get_plugins

    plugins = get_plugins()
    owners = {info.module.split(":")[0].split(".")[0]: info for info in plugins.infos if info.status == "ok"}
    culprit = None
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "").split(".")[0]
        culprit = owners.get(module, culprit)
        tb = tb.tb_next
    if culprit is None and command in plugins.commands:
        culprit = plugins.commands[command][2]
    if culprit is None:
        who = f"ptcli {command}" if command else "ptcli"
    else:
        who = f"{culprit.name} ({', '.join(culprit.recipes)})"
    return f"{who} failed: {one_line(exc)} (rerun with PTCLI_DEBUG=1 for the traceback)"


def report_error(message: str, exit_code: int, *, as_json: bool) -> None:
    if exit_code in (130, 143):
        _CTRL_C["said"] = True
    if as_json:
        emit_json({"error": message, "exit_code": exit_code})
    else:
        error_line(message)


app = typer.Typer(
    cls=PtcliGroup,
    name="ptcli",
    help="PyTorch task recipes from the command line. Each recipe's commands come from a plugin; "
    "`ptcli plugins` lists them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's markdown stack would double the start-up time of `ptcli --help`.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ptcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """PyTorch task recipes from the command line."""


def _register_core_commands() -> None:
    import importlib

    import typer as typer_module

    from ptcli.plugins import CORE_COMMANDS

    for name, (target, short_help) in CORE_COMMANDS.items():
        module_name, _, attribute = target.partition(":")
        function = getattr(importlib.import_module(f"ptcli.cli.commands.{module_name}"), attribute)
        if isinstance(function, typer_module.Typer):
            app.add_typer(function, name=name)
        else:
            app.command(name=name, short_help=short_help)(function)


_register_core_commands()


def _exit_without_teardown() -> None:
    """Under torchrun: run the command, then leave with its exit code at once. The interpreter's
    own teardown destroys gloo's and the rendezvous store's C++ threads while they are still
    joinable, which aborts about one process in eight ("terminate called without an active
    exception", exit -6) after the work has succeeded; the command has flushed and closed
    everything it wrote by then."""
    code = _run_for_exit_code(lambda: app(prog_name="ptcli"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_for_exit_code(work) -> int:
    """``work()``'s exit code: 0, or its SystemExit's (a message given as the code is printed);
    a Ctrl-C or SIGTERM that came before a command took it (loading the plugins) is said in one
    line, as a command says it."""
    try:
        work()
        code = 0
    except KeyboardInterrupt as exc:
        from ptcli.errors import Terminated

        code = 143 if isinstance(exc, Terminated) else 130
        report_error("terminated" if code == 143 else "interrupted", code, as_json="--json" in sys.argv[1:])
        return code
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code in (0, 130) and _CTRL_C["seen"] and not _CTRL_C["said"]:
        # Ctrl-C, and nothing said so: a library swallowed the KeyboardInterrupt (torch's C
        # module clears the error of a NumPy import it cut short, and the command went on to
        # its end), or Typer turned one during the parsing of the command line into a quiet 130.
        report_error("interrupted", 130, as_json="--json" in sys.argv[1:])
        return 130
    return code


def honour_ctrl_c() -> None:
    """Ctrl-C (SIGINT) stops ptcli even where it starts with SIGINT ignored, as a background job
    of a non-interactive shell does (`ptcli train ... &` in a script): Python then leaves it
    ignored, and a `kill -INT` would go unheard until the run ended."""
    import signal
    import threading

    from ptcli import _interrupted_while_starting

    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.default_int_handler, _interrupted_while_starting):
        signal.signal(signal.SIGINT, _on_ctrl_c)


#: Whether Ctrl-C reached this process: an exception that comes out of a step it cut short (an
#: import interrupted halfway fails again as an ImportError) is then the interruption, not a crash.
_CTRL_C = {"seen": False, "said": False}


def _on_ctrl_c(_signum, _frame):
    _CTRL_C["seen"] = True
    spec = getattr(sys.modules.get("torch"), "__spec__", None)
    if getattr(spec, "_initializing", False):
        # torch is being imported: an exception raised inside its C++ start-up aborts the
        # process (exit -6). The signal comes again once the import is over.
        if not _CTRL_C.get("deferred"):
            import threading

            _CTRL_C["deferred"] = True
            threading.Thread(target=_ctrl_c_again_after, args=(spec,), daemon=True).start()
        return
    raise KeyboardInterrupt


def _ctrl_c_again_after(spec) -> None:
    import signal
    import time

    while getattr(spec, "_initializing", False):
        time.sleep(0.005)
    _CTRL_C["deferred"] = False
    os.kill(os.getpid(), signal.SIGINT)


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM raises ptcli.errors.Terminated (a KeyboardInterrupt) in the main thread, so that a
    `kill` or a container's stop runs the clean-up that Ctrl-C runs (no half-written file is left)
    rather than ending the process where it stands. `ptcli serve` installs its own (a drain)."""
    import signal
    import threading

    from ptcli.errors import Terminated

    def terminated(_signum, _frame):
        raise Terminated

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminated)


def fill_optional_values(argv: list[str], commands: dict) -> None:
    """Click options always take their value; a recipe's ``Command.optional_values`` may be
    given bare (`ptcli detect clip.mp4 --track`): the first choice is put in after them. What
    follows is their value only when it is one of the choices, and an input or another option
    otherwise; a bare word that is neither (`--track sort`) is a usage error listing the choices,
    not an input that does not exist."""
    if len(argv) < 2 or argv[1] not in commands:
        return
    optional = commands[argv[1]][0].optional_values
    position = 2
    while position < len(argv):
        if argv[position] == "--":
            return
        choices = optional.get(argv[position])
        if choices:
            following = argv[position + 1] if position + 1 < len(argv) else None
            if following is not None and following not in choices and _looks_like_a_value(following):
                listed = ", ".join(choices)
                from ptcli.errors import UsageError as BadUsage

                raise BadUsage(f"{argv[position]} takes one of {listed}, or nothing (then {choices[0]}): "
                                 f"{following!r} is none of them (an input of that name: write ./{following})")
            if following not in choices:
                argv.insert(position + 1, choices[0])
        position += 1


def _looks_like_a_value(word: str) -> bool:
    """A word meant as an option's value rather than an input: empty, or a bare name (no folder,
    no extension, no glob, no URL) that names nothing on disk."""
    from pathlib import Path

    if word == "":
        return True
    if word.startswith("-") or any(mark in word for mark in "/\\.*?[:%"):
        return False
    return not Path(word).exists()


def main() -> None:
    """The `ptcli` command: the work, then an exit without the interpreter's teardown."""
    _leave(_run_for_exit_code(_main))


def _leave(code: int) -> None:
    """Freeing torch's and the exporters' modules at the interpreter's end takes seconds after
    the last line is printed (1.0 s of `classify-image examples/cat.jpg`'s 5.0; 2.4 s of an ONNX
    export), a wait for nothing. What must run at exit still does (atexit: temporary folders,
    multiprocessing, MLflow, logging), stdout and stderr are flushed, and the process ends."""
    import atexit

    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away after the last result: nothing is lost
        stdout_to_nowhere()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _main() -> None:
    from ptcli.allocator import reuse_freed_memory
    from ptcli.plugins import get_plugins

    reuse_freed_memory()  # before any thread allocates (ptcli.allocator)
    honour_ctrl_c()
    stop_cleanly_on_sigterm()

    try:
        plugins = get_plugins()
    except PtcliError as exc:  # only with PTCLI_STRICT_PLUGINS=1
        report_error(str(exc), exc.exit_code, as_json="--json" in sys.argv)
        sys.exit(exc.exit_code)
    for info in plugins.failed():
        if info.recipes:  # loaded, less what it was refused
            warn(f"{info.error} (see `ptcli plugins`)")
        else:
            warn(f"plugin {info.name!r} failed to load and is skipped: {info.error} (see `ptcli plugins`)")
    try:
        fill_optional_values(sys.argv, plugins.commands)
    except PtcliError as exc:
        report_error(str(exc), exc.exit_code, as_json="--json" in sys.argv)
        sys.exit(exc.exit_code)
    try:
        from ptcli.distributed import world_size

        if world_size() > 1:
            _exit_without_teardown()
        app(prog_name="ptcli")
    except BrokenPipeError:
        stdout_to_nowhere()  # the reader closed the pipe (`ptcli ... --json | head -1`): stop quietly
        sys.exit(141 if os.name == "posix" else 1)
