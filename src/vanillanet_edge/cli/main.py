"""The `vanillanet-edge` command line: a thin layer over vanillanet_edge.api.

This module is the entry point (the `main` group and the options every command shares live in
options.py); each command group has its own module: model_cli (data, train, fuse, convert,
calibrate, info), measure_cli (bench, eval), run_cli (run, init), report_cli, devices_cli,
tune_cli, profile_cli."""
from __future__ import annotations

import os

# Quiet the C++ logging of the TensorFlow-based LiteRT converter and friends; set before they load.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "2")

import click  # noqa: E402

from .friendly import FriendlyGroup  # noqa: E402


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(package_name="vanillanet-edge")
@click.option("-v", "--verbose", is_flag=True,
              help="Show the toolchains' own output (TensorFlow, OpenVINO, coremltools warnings...). "
                   "Without it, `run` keeps it in OUT/toolchain.log and other commands drop it.")
def main(verbose):
    """Ship a trained VanillaNet to edge hardware.

    \b
    Typical flow:
      vanillanet-edge data digits data/digits          # built-in real images (scikit-learn digits)
      vanillanet-edge train --data data/digits --out tiny.pth
      vanillanet-edge fuse tiny.pth --out tiny-deploy.pth
      vanillanet-edge info vanillanet_5                # params, MACs, per-layer table
    Or all of it on the built-in default: vanillanet-edge run   (vanillanet-edge init: a pipeline file)
    """
    if not verbose:
        from ..console import quiet
        quiet()


from .model_cli import calibrate_cmd, convert_cmd, data, fuse_cmd, info_cmd, train_cmd  # noqa: E402

for _command in (data, train_cmd, fuse_cmd, convert_cmd, calibrate_cmd, info_cmd):
    main.add_command(_command)

from .measure_cli import bench_cmd, classify_cmd, eval_cmd  # noqa: E402

main.add_command(bench_cmd)
main.add_command(eval_cmd)
main.add_command(classify_cmd)

from .run_cli import init_cmd, run_cmd  # noqa: E402

main.add_command(run_cmd)
main.add_command(init_cmd)

from .report_cli import baseline_cmd, report_cmd  # noqa: E402

main.add_command(report_cmd)
main.add_command(baseline_cmd)

from .devices_cli import devices_group  # noqa: E402
from .tune_cli import recommend_cmd, tune_cmd  # noqa: E402

main.add_command(devices_group)
main.add_command(tune_cmd)
main.add_command(recommend_cmd)

from .profile_cli import profile_cmd  # noqa: E402

main.add_command(profile_cmd)

# profile_cli still reads the --set parser under its old private name here; it moved to options.py.

if __name__ == "__main__":
    main()
