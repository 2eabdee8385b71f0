"""`python -m jrobot.export`: turn a training run (or a LeRobot checkpoint) into a policy bundle.

    python -m jrobot.export --workdir runs/act --out bundles/act            # latest step, EMA if any
    python -m jrobot.export --workdir runs/act --step 20000 --out bundles/act_20k
    python -m jrobot.export --from-lerobot path/to/pretrained_model --out bundles/lerobot_act [--fps 30]
    python -m jrobot.export --from-lerobot smolvla/pretrained_model [--vlm VLM_DIR] --out bundles/smolvla
    python -m jrobot.export --from-lerobot lerobot/smolvla_base --out bundles/smolvla     # a Hub model id
    python -m jrobot.export --workdir runs/act --out bundles/act --push_to_hub me/act_so101 [--hub_dataset me/pick]

With --push_to_hub the bundle is also uploaded as a model repo with a model card (its features, how to
run it, the bundle's eval.json when present); `--policy hf://me/act_so101[@REV]` then runs or serves it.

The bundle (see `jrobot.bundle`) holds the parameters and a serialized `jax.export` of the inference
function, traced here with the policy's model code, so `python -m jrobot.run` needs neither flax nor the
training stack and runs the exact same computation.

A language-conditioned policy (LANGUAGE input features, `spec.language_keys`) takes its instruction as
token ids (B, L) int32 and an attention mask (B, L) bool, with no history axis; its model carries the
`jrobot.language.TaskTokenizer` that made them (`model.tokenizer`), which is saved into the bundle so
the runtime turns a task string into exactly those inputs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, CliError, exactly_one, flag, run_tool, usage
from jrobot.train.export import export_lerobot, export_workdir


@dataclasses.dataclass
class ExportOptions:
    """`python -m jrobot.export` flags: exactly one of --workdir / --from-lerobot."""

    out: str = flag(help="bundle directory to write", metavar="DIR")
    workdir: str | None = flag(
        None, help="training run directory (python -m jrobot.train --workdir)", metavar="DIR"
    )
    from_lerobot: str | None = flag(
        None, help="LeRobot pretrained_model folder, or a Hugging Face Hub model id", metavar="DIR|ID"
    )
    step: int | None = flag(None, help="checkpoint step (default: latest)")
    no_ema: bool = flag(False, help="export the raw parameters even if an EMA exists")
    fps: int | None = flag(None, help="control rate for LeRobot checkpoints (default 30)")
    vlm: str | None = flag(
        None,
        help="VLA policies: the VLM folder (tokenizer; default: the one recorded, or vlm_model_name locally / in the HF cache)",
        metavar="DIR",
    )
    precision: str | None = flag(
        None, help="VLA checkpoints: float32 (default) or bfloat16 (LeRobot's mixed bf16/fp32)"
    )
    push_to_hub: str | None = flag(
        None, help="also upload the bundle as this Hub model repo", metavar="USER/REPO"
    )
    private: bool = flag(False, help="with --push_to_hub: a private repo")
    hub_dataset: str | None = flag(
        None, help="with --push_to_hub: the Hub dataset it was trained on, for the card"
    )


USAGE = usage("python -m jrobot.export", ExportOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ExportOptions)
    binder.finish()
    exactly_one(args, "workdir", "from_lerobot")
    if args.workdir:
        info = export_workdir(
            args.workdir, args.out, step=args.step, use_ema=not args.no_ema, vlm=args.vlm, fps=args.fps
        )
    else:
        info, notes = export_lerobot(
            args.from_lerobot, args.out, vlm=args.vlm, precision=args.precision, fps=args.fps
        )
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.out}: {info.spec.type} policy, variants {info.variants}")
    if args.push_to_hub:
        from jrobot.hub import HubError, push_bundle

        try:
            url = push_bundle(args.out, args.push_to_hub, private=args.private, dataset=args.hub_dataset)
        except HubError as e:
            raise CliError(f"{e} (the bundle is written: {args.out})") from e
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))
