"""`--config=NAME` and `--config.key=value` on the command line.

ml_collections' `config_flags.DEFINE_config_file` loads a config file (`path.py:ARG`) and applies
`--config.a.b=value` overrides with type checking. `--config=NAME` with a setting name (see
`magvit.configs.NAMES`) is rewritten to `settings.py:NAME`, so both spellings work.
"""
import os
import re

from absl import flags
from ml_collections import config_flags

from magvit.configs.settings import NAMES

SETTINGS_FILE = os.path.join(os.path.dirname(__file__), "settings.py")


class ConfigFieldError(ValueError):
    """A `--config.a.b=value` override names a field the config does not have."""


def unknown_field_message(error: Exception, argv: list[str], name: str = "config") -> str:
    """A one-line message for ml_collections' KeyError / AttributeError on an unknown override
    field: the override flag, the missing field and ml_collections' suggestion, if any."""
    while isinstance(error, Exception) and error.args:   # AttributeError(KeyError(message))
        error = error.args[0]
    text = str(error)
    field = re.search(r"'([^']+)'", text)
    field = field.group(1) if field else text.strip("'")
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    culprit = next((a for a in argv if a.startswith(f"--{name}.")
                    and field in a.split("=", 1)[0].split(".")[1:]), None)
    where = culprit.split("=", 1)[0] if culprit else f"--{name}.*"
    return (f"{where}: the config has no field {field!r}"
            + (f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""))


def define_config_flag(default: str = "tiny", name: str = "config"):
    """Defines --config (a setting name or config file) with --config.key=value overrides.

    ml_collections applies the overrides while defining the flag; an unknown field ends the
    program with a one-line message naming the override (no traceback)."""
    import sys
    try:
        return config_flags.DEFINE_config_file(
            name, default=config_path(default),
            help_string=f"A setting name ({', '.join(NAMES)}) or a config file `path.py[:arg]`; "
                        f"override any field with --{name}.key=value.",
            lock_config=True)
    except (KeyError, AttributeError) as e:
        raise SystemExit(f"error: {unknown_field_message(e, sys.argv, name)}") from None


def config_path(value: str) -> str:
    """Maps a setting name to the settings file; leaves file paths as they are."""
    if value in NAMES:
        return f"{SETTINGS_FILE}:{value}"
    return value


def normalize_argv(argv: list[str], name: str = "config", default: str = "tiny") -> list[str]:
    """Rewrites `--config=NAME` / `--config NAME` in argv to the settings-file form.

    ml_collections applies `--config.key=value` overrides only when `--config` itself is on the
    command line (and before them), so overrides without it get `--config=<default>` inserted.
    """
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(f"--{name}="):
            out.append(f"--{name}={config_path(arg.split('=', 1)[1])}")
        elif arg == f"--{name}" and i + 1 < len(argv):
            out.extend([arg, config_path(argv[i + 1])])
            i += 1
        else:
            out.append(arg)
        i += 1
    given = any(a == f"--{name}" or a.startswith(f"--{name}=") for a in out)
    overrides = [i for i, a in enumerate(out) if a.startswith(f"--{name}.")]
    if not given and overrides:
        out.insert(overrides[0], f"--{name}={config_path(default)}")
    return out


def parse_config(argv: list[str], name: str = "config"):
    """Parses a config from an argv list alone (for tests and library callers)."""
    argv = ["prog"] + normalize_argv(argv, name)
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(name, default=config_path("tiny"),
                                    flag_values=flag_values, lock_config=True)
    # ml_collections reads the --config.key overrides from sys.argv unless given an argv.
    flag_values[name]._sys_argv = argv  # pylint: disable=protected-access
    try:
        flag_values(argv)
    except (KeyError, AttributeError) as e:
        raise ConfigFieldError(unknown_field_message(e, argv, name)) from None
    return flag_values[name].value


def check_steps(value, flag: str) -> None:
    """A step count must be a positive integer (a run of 0 or fewer steps makes no model)."""
    if int(value) < 1:
        raise ValueError(f"--config.{flag}={value}: must be at least 1")
