"""What `masklab mask` and `masklab noise` share: building the op from options, loading
the data, writing the .npz and the requested-vs-realized table."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from masklab import datasets
from masklab.cli.common import Format, FormatOption, HeaderOption, cli_command, say

SpecArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="SPEC",
        help="A spec: its data section picks the dataset and the images (train_limit, test_limit) as a run does; without --op, its train_ops are written.",
        show_default=False,
    ),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        metavar="NAME",
        help=f"Dataset name instead of a spec: {', '.join(datasets.forms('images'))}.",
    ),
]
OpOption = Annotated[
    str | None,
    typer.Option("--op", metavar="OP", help="The op name, or a compact form such as 'patch:rate=0.5,size=4'."),
]
OutOption = Annotated[
    Path, typer.Option("--out", metavar="FILE.npz", help="The .npz file to write (images, masks, labels, manifest).")
]
PreviewOption = Annotated[
    Path | None,
    typer.Option(
        "--preview", metavar="PNG", help="Also write a PNG: 8 originals above every copy, masked pixels in orange."
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="The run seed whose draws to reproduce.")]
CopiesOption = Annotated[
    int,
    typer.Option(
        "--copies",
        metavar="K",
        help="K draws per image, copy k (0..K-1) as epoch k + 1 draws it: masks get shape (K, N, H, W).",
        min=1,
    ),
]
SplitOption = Annotated[str, typer.Option("--split", metavar="SPLIT", help="train or test.")]
BatchOption = Annotated[
    int, typer.Option("--batch-size", help="Images per batch while drawing (results do not depend on it).", min=1)
]
ModeOption = Annotated[
    str | None,
    typer.Option("--mode", metavar="MODE", help="static or dynamic: copy k is what training draws in epoch k + 1."),
]
POption = Annotated[str | None, typer.Option("--p", metavar="P", help="Probability of applying the op to an image.")]
LimitOption = Annotated[
    int | None, typer.Option("--limit", help="Only a stratified subset of this many images.", min=1)
]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")]


COMMAND_FAMILIES = {"mask": ("mask", "soft"), "noise": ("noise", "transform")}  # the op families each command draws
SHARED = ("p", "mode")  # op parameters with options of their own above
TRAINING_ONLY = ("copies", "share_views", "placement", "refresh")  # --copies K is the command's; the rest needs a model
PARAMETERS_PANEL = "Op parameters (each also in --op NAME:KEY=VALUE form)"


def op_parameter_options(command: str) -> list[inspect.Parameter]:
    """One `--key` option per parameter of the command's ops, its help from the op table
    (ops/registry.py): which ops take it and what it means."""
    from masklab.ops import registry

    takers: dict[str, dict[str, list[str]]] = {}  # key -> doc -> the ops it describes
    params: dict[str, registry.Param] = {}
    for op in registry.OPS.values():
        if op.family not in COMMAND_FAMILIES[command]:
            continue
        for key, param in registry.allowed_params(op, grid=False).items():
            if key not in SHARED and key not in TRAINING_ONLY:
                takers.setdefault(key, {}).setdefault(param.doc, []).append(op.name)
                params.setdefault(key, param)
    everyone = [op.name for op in registry.OPS.values() if op.family in COMMAND_FAMILIES[command]]
    options = []
    for key, by_doc in takers.items():
        meaning = "; ".join(
            f"{'every op' if ops == everyone else ', '.join(ops)}: {doc}" for doc, ops in by_doc.items()
        )
        ranged = "; lo,hi: a range, one value drawn per image" if params[key].varies else ""
        option = typer.Option(
            f"--{key.replace('_', '-')}",
            metavar=key.upper(),
            help=f"{meaning}{ranged}.",
            rich_help_panel=PARAMETERS_PANEL,
        )
        annotation = Annotated[str | None, option]
        options.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return options


def op_list(command: str) -> str:
    """The ops a command draws, one line each, from the op table (for its --help)."""
    from masklab.ops import registry

    lines = [f"  {op.name}: {op.doc}" for op in registry.OPS.values() if op.family in COMMAND_FAMILIES[command]]
    return "Ops (the parameters each takes are below):\n\n" + "\n\n".join(lines)


def op_command(command: str, doc: str):
    """The `masklab mask` or `masklab noise` command: the options below, with the
    parameter options of the command's ops generated from the op table."""
    generated = op_parameter_options(command)
    names = [p.name for p in generated]

    def run(**options) -> None:
        params = {name: options.pop(name) for name in names}
        materialize(command, params=params, **options)

    fixed = inspect.signature(_options, eval_str=True).parameters.values()
    head = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed]
    run.__signature__ = inspect.Signature([*head[:3], *generated, *head[3:]])
    run.__doc__ = f"{inspect.cleandoc(doc)}\n\n{op_list(command)}"
    run.__name__ = command
    return cli_command(run)


def _options(
    spec: SpecArg = None,
    dataset: DatasetOption = None,
    op: OpOption = None,
    p: POption = None,
    mode: ModeOption = None,
    seed: SeedOption = 0,
    copies: CopiesOption = 1,
    split: SplitOption = "train",
    batch_size: BatchOption = 1024,
    limit: LimitOption = None,
    out: OutOption = ...,
    preview: PreviewOption = None,
    device: DeviceOption = "cpu",
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """The options `masklab mask` and `masklab noise` share (their signature, for op_command)."""


def build_ops(op: str | None, params: dict[str, str | None], spec, family: str) -> list[dict]:
    """Ops from --op and the parameter options (texts such as 0.5 or 0.1,0.3), else the spec's."""
    from masklab.errors import UsageError
    from masklab.ops import registry

    given = {k: v for k, v in params.items() if v is not None}
    if op is None:
        if given:
            raise UsageError(
                f"--{next(iter(given)).replace('_', '-')} needs --op, e.g. --op {'patch' if family == 'mask' else 'gaussian'}"
            )
        if spec is None or not spec.train_ops:
            raise UsageError("name an op with --op (e.g. --op patch --rate 0.5), or pass a SPEC with train_ops")
        from masklab.ops.adaptive_spec import uses_model

        following = uses_model(spec.train_ops)
        if following:
            raise UsageError(
                f"{following[0]}: follows the model as it trains, so there is nothing to draw without one; give fixed values with --set"
            )
        return spec.train_ops
    raw = registry.parse_op_text(op) if ":" in op else {"op": op}
    for key, text in given.items():
        values = [registry._scalar_text(t.strip()) for t in text.split(",") if t.strip()]
        raw[key] = values[0] if len(values) == 1 else values
    kind = registry.OPS[raw["op"]].family if raw["op"] in registry.OPS else COMMAND_FAMILIES[family][0]
    if kind not in COMMAND_FAMILIES[family]:
        other = next(
            (f"masklab {c}" for c, kinds in COMMAND_FAMILIES.items() if kind in kinds), "a ViT spec's train_ops"
        )
        raise UsageError(f"--op {raw['op']} is a {kind} op; use `{other}` for it")
    return [registry.validate(raw, f"--op {raw['op']}")]


def materialize(
    family: str,
    *,
    spec,
    dataset,
    op,
    params: dict,
    p,
    mode,
    seed,
    copies,
    split,
    batch_size,
    limit,
    out,
    preview,
    device,
    fmt: Format,
    header: bool = True,
) -> None:
    """Draw the command's ops over a split, write the .npz (and preview) and print the
    requested-vs-realized table."""
    spec_path, dataset_name = spec, dataset
    params = params | {"p": p, "mode": mode}
    from masklab import spec as spec_mod
    from masklab.cli.tables import columns, render
    from masklab.data import materialize, registry as data_registry
    from masklab.data.dataset import limit as limit_dataset
    from masklab.devices import resolve_device
    from masklab.errors import UsageError
    from masklab.ops import registry as op_registry

    if split not in ("train", "test"):
        raise UsageError(f"--split {split}: must be train or test")
    if (spec_path is None) == (dataset_name is None):
        raise UsageError("give either a SPEC or --dataset NAME")
    if out.suffix != ".npz":
        raise UsageError(f"--out {out}: must end in .npz")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; name the file to write, e.g. --out {out / 'masked.npz'}")
    if preview:
        from masklab.analysis.plots import check_plot_path

        check_plot_path(preview, "--preview")  # a folder is refused before any work
    spec = spec_mod.load_spec(spec_path) if spec_path else None
    ops = build_ops(op, params, spec, family)
    fill, epochs = None, 1
    if spec is not None:
        d = spec.data
        dataset = data_registry.load(d.dataset, d.root, d.download)
        limits = (limit or d.train_limit, limit or d.test_limit)  # the images a run trains on, as training cuts them
    else:
        spec_mod._dataset_name(dataset_name, "--dataset")
        dataset = data_registry.load(dataset_name)
        limits = (limit, limit)
    source = dataset  # the file names the whole dataset, which is what `npz:FILE` reloads and checks
    dataset = limit_dataset(dataset, *(n if s == split else None for n, s in zip(limits, ("train", "test"))))
    if spec is not None:  # fills and epoch schedules as a run with this seed has them
        fill, epochs = materialize.training_fill(dataset, spec.data.val_fraction, seed), spec.train.epochs
    _, height, width = dataset.shape
    op_registry.check_image_shape(ops, height, width, "ops")
    result = materialize.corrupt_split(
        dataset, split, ops, seed, copies, batch_size, resolve_device(device), fill=fill, epochs=epochs
    )
    materialize.write(out, result, ops, seed, split, source)
    say(
        f"wrote {out}: {result.images.shape[1]} images x {copies} cop{'y' if copies == 1 else 'ies'} of {dataset.name} ({split})"
    )
    if preview:
        from masklab.analysis.figures import preview_png

        preview_png(preview_of(result, ops, dataset, split, seed), preview)
        say(f"wrote {preview}")
    rows = materialize.realized_rows(result, ops, dataset.classes)
    render(
        rows,
        columns("op", "measure", "class", "n", "requested", "realized", "min", "max"),
        fmt.value,
        title="requested vs realized",
        header=header,
    )


def preview_of(c, ops: list[dict], dataset, split: str, seed: int, n: int = 8):
    """The figure data of `--preview`: n images spread over the classes, every copy."""
    from masklab.analysis.figures import Preview
    from masklab.data.materialize import preview_indices
    from masklab.ops import registry

    pick = preview_indices(c.labels, n)
    copies = len(c.images)
    return Preview(
        originals=c.originals[pick],
        changed=c.images[:, pick],
        masks=None if c.masks is None else c.masks[:, pick],
        row_labels=[f"copy {k} (epoch {k + 1})" for k in range(copies)] if copies > 1 else ["changed"],
        column_labels=[str(dataset.classes[k]) for k in c.labels[pick]],
        title=f"{dataset.name} ({split}): " + "; ".join(registry.label(o) for o in ops),
        notes=[
            f"copy k: what a run with seed {seed} and these ops draws in epoch k + 1 (epochs count from 1, as in metrics.jsonl)"
        ]
        if copies > 1
        else [],
    )
