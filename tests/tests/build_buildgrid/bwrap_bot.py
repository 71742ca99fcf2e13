#!/usr/bin/env python3
"""Runs ../shared/peers/buildgrid/mini_bot.py with each command in a bubblewrap
chroot of its input root, as BuildGrid's usual runner (buildbox-run-bubblewrap)
does.

mini_bot runs commands on the host with the input root as working directory;
BuildStream-shaped actions use absolute paths inside the input root
(`%{install-root}`, `/usr/share/...`, `#!/bin/sh`), which on the host would
point at the host's own files. This wrapper changes one thing: the
`subprocess.run` mini_bot calls becomes `bwrap --bind ROOT / --chdir /WD ...`.

Usage: bwrap_bot.py MINI_BOT_PY [mini_bot options...]   (--work-dir required)
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import types


def main() -> int:
    if len(sys.argv) < 2:
        sys.exit("usage: bwrap_bot.py MINI_BOT_PY [mini_bot options...]")
    bot_path = sys.argv[1]
    bot_args = sys.argv[2:]
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--work-dir", required=True)
    known, _ = parser.parse_known_args(bot_args)
    work_dir = os.path.realpath(known.work_dir)
    bwrap = shutil.which("bwrap") or sys.exit("bwrap_bot: bubblewrap (bwrap) is not installed")

    spec = importlib.util.spec_from_file_location("mini_bot", bot_path)
    mini_bot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mini_bot)

    def sandboxed_run(args, cwd, **kwargs):
        cwd = os.path.realpath(cwd)
        first = os.path.relpath(cwd, work_dir).split(os.sep)[0]
        root = os.path.join(work_dir, first)
        relative = os.path.relpath(cwd, root)
        inside = "/" if relative == "." else "/" + relative
        wrapped = [bwrap, "--bind", root, "/", "--dev", "/dev", "--proc", "/proc",
                   "--unshare-all", "--die-with-parent", "--chdir", inside, "--", *args]
        return subprocess.run(wrapped, cwd=cwd, **kwargs)

    mini_bot.subprocess = types.SimpleNamespace(run=sandboxed_run, TimeoutExpired=subprocess.TimeoutExpired)
    sys.argv = [bot_path, *bot_args]
    return mini_bot.main()


if __name__ == "__main__":
    sys.exit(main())
