"""One command-line convention for every entry point: absl flags, `--config` / `--config.key=value`.

Each program declares its flags on a fresh `absl.flags.FlagValues` (importing a module defines no
global flags) and runs through `Program.run`, which gives every tool the same behaviour:
  --help (-h, --helpshort, --helpfull)  prints the program's doc and every flag, exit 0, even
                                        when required flags are missing
  a missing required flag               `<prog>: error: --name is required ...`, exit 2
  an unknown flag or a stray argument   `<prog>: error: ...` naming it, exit 2
  a config field that does not exist    `<prog>: error: the config has no field ...`, exit 2
Programs that run a Beam job pass `passthrough=<splitter>`: the tokens Beam's option parser knows
(`--runner`, `--direct_num_workers`, ...) are handed to the job, the rest must be the program's own.
"""
import dataclasses
import sys
from typing import Callable

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags as mlc_config_flags

from magvit.configs.flags import NAMES, config_path, normalize_argv, unknown_field_message

HELP_FLAGS = ("-h", "-?", "-help", "--help", "--helpshort", "--helpfull")


class UsageError(ValueError):
    """A bad command line: says which flag and what was expected."""


@dataclasses.dataclass
class Program:
    """A command-line program: its name, doc, flags, required flags, optional --config."""
    name: str                                         # as typed: `python -m <name>`
    doc: str                                          # the module docstring (usage text)
    define_flags: Callable[[flags.FlagValues], None]  # defines the program's own flags
    required: tuple[str, ...] = ()
    config_default: str | None = "tiny"               # None: the program takes no --config
    # argv -> (the program's tokens, pass-through tokens), e.g. Beam's pipeline options
    passthrough: Callable[[list[str]], tuple[list[str], list[str]]] | None = None
    passthrough_help: str = ""

    def flag_values(self, argv: list[str]) -> flags.FlagValues:
        """A fresh FlagValues with every flag; `argv` feeds ml_collections' --config.key overrides."""
        fv = flags.FlagValues()
        if self.config_default is not None:
            mlc_config_flags.DEFINE_config_file(
                "config", default=config_path(self.config_default), flag_values=fv,
                lock_config=True, sys_argv=argv,
                help_string=f"A setting name ({', '.join(NAMES)}) or a config file "
                            "`path.py[:arg]`; override any field with --config.key=value.")
        self.define_flags(fv)
        return fv

    def usage(self) -> str:
        required = (f"\nRequired flags: {', '.join('--' + n for n in self.required)}."
                    if self.required else "")
        text = (f"{self.doc.strip()}\n\nusage: python -m {self.name} [flags]{required}\n\n"
                f"Flags:\n{self.flag_values([self.name]).get_help()}")
        if self.passthrough_help:
            text += f"\n\n{self.passthrough_help}"
        return text

    def parse(self, argv: list[str]) -> tuple[flags.FlagValues, list[str]]:
        """(flag values, pass-through tokens) of `argv` (without the program name); raises
        UsageError naming the flag on a bad command line."""
        argv = list(argv)
        if self.config_default is not None:
            argv = normalize_argv(argv, default=self.config_default)
            _check_config_value(argv)
        ours, passed = self.passthrough(argv) if self.passthrough else (argv, [])
        full = [self.name] + ours
        fv = self.flag_values(full)
        try:
            positional = fv(full)[1:]
            if self.config_default is not None:
                fv.config  # pylint: disable=pointless-statement  (applies the overrides)
        except (KeyError, AttributeError) as e:  # ml_collections: a field the config lacks
            raise UsageError(unknown_field_message(e, ours)) from e
        except (flags.Error, OSError, ValueError, TypeError) as e:
            raise UsageError(str(e).strip()) from e
        if positional:
            raise UsageError(f"unexpected argument(s): {' '.join(positional)}")
        missing = [f"--{name}" for name in self.required if fv[name].value in (None, "", [])]
        if missing:
            raise UsageError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "required:\n" + "\n".join(_help_of(fv, m[2:]) for m in missing))
        return fv, passed

    def run(self, main: Callable[[flags.FlagValues, list[str]], int | None],
            argv: list[str] | None = None) -> int:
        """Parses `argv` (default sys.argv[1:]) and calls `main(flag_values, passthrough)`;
        returns the exit status: 0 (or main's), 2 on a usage error (also one main raises)."""
        argv = sys.argv[1:] if argv is None else list(argv)
        if any(a in HELP_FLAGS for a in argv):
            print(self.usage())
            return 0
        try:
            fv, passed = self.parse(argv)
            _start_absl_logging()
            status = main(fv, passed)
        except UsageError as e:
            print(f"{self.name}: error: {e}\nTry --help.", file=sys.stderr)
            return 2
        return int(status or 0)


def _help_of(fv: flags.FlagValues, name: str) -> str:
    return f"  --{name}: {fv[name].help}"


def _check_config_value(argv: list[str]) -> None:
    """`--config=X` where X is neither a setting name nor a config file: one clear error."""
    import os  # local-only: a config file is Python source on this machine
    for i, arg in enumerate(argv):
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if not os.path.isfile(value.split(":", 1)[0]):  # local-only
                raise UsageError(f"--config={value}: neither a setting name "
                                 f"({', '.join(NAMES)}) nor a config file")


def _start_absl_logging() -> None:
    """absl logging as app.run sets it up (INFO to stderr), without parsing the global flags."""
    if not flags.FLAGS.is_parsed():
        try:
            flags.FLAGS.mark_as_parsed()
        except AttributeError:  # older absl
            pass
    absl_logging.use_absl_handler()
