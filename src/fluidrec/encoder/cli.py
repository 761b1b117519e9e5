"""``fluidrec encoder``: train, embed, eval, ablate (thin: parse -> one library call -> print)."""

from __future__ import annotations

import argparse

from fluidrec.utils.cli import add_json_flag, emit, finite_float, non_negative_int, positive_int, render_kv, seed_int


PRESETS = ("default", "demo", "tiny", "lsa")
_NEURAL_FLAGS = ("backbone", "vision", "fusion", "text_tokens", "added_words", "steps", "batch_size", "align_fraction", "video_ratio", "lr", "lr_schedule", "threads")


def _preset(name: str, seed: int):
    from fluidrec.encoder.config import encoder_default, encoder_demo, encoder_lsa, encoder_tiny

    builders = {"default": encoder_default, "demo": encoder_demo, "tiny": lambda s: encoder_tiny("scratch", s), "lsa": encoder_lsa}
    return builders[name](seed)


def _config_from_args(args):
    from fluidrec.encoder.config import LsaConfig
    from fluidrec.errors import UsageError

    cfg = _preset(args.preset, args.seed)
    if isinstance(cfg, LsaConfig):
        given = [f"--{k.replace('_', '-')}" for k in _NEURAL_FLAGS if getattr(args, k, None) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: not used by --preset lsa (TF-IDF + SVD, no network to train)")
        return cfg
    model, train = {}, {}
    if args.backbone is not None:
        model["backbone"] = args.backbone
    if args.vision is not None:
        model["vision"] = args.vision
    if args.fusion is not None:
        model["fusion"] = args.fusion
    for key in ("text_tokens", "added_words"):
        if getattr(args, key, None) is not None:
            model[key] = getattr(args, key)
    for key in ("steps", "batch_size", "align_fraction", "video_ratio", "lr", "lr_schedule", "threads"):
        value = getattr(args, key, None)
        if value is not None:
            train["num_threads" if key == "threads" else key] = value
    return cfg.replace(model=model, train=train)


def _train(args) -> int:
    from fluidrec.encoder.config import LsaConfig
    from fluidrec.encoder.lsa import train_lsa
    from fluidrec.encoder.train import train_encoder
    from fluidrec.utils.io import read_json

    cfg = _config_from_args(args)
    if isinstance(cfg, LsaConfig):
        out = train_lsa(cfg, args.dataset, args.out)  # seconds: refitted every time, nothing to resume
    else:
        out = train_encoder(cfg, args.dataset, args.out, resume=not args.no_resume, progress=not args.json)
    summary = read_json(out / "config.json")["training"]
    emit({"model_dir": str(out), **{k: v for k, v in summary.items() if k != "stages"}}, args.json,
         lambda d: render_kv(d, "encoder trained"))
    return 0


def _embed(args) -> int:
    from fluidrec.encoder.embed import embed_dataset

    s = embed_dataset(args.model, args.dataset, args.out, batch_size=args.batch_size, num_threads=args.threads, progress=not args.json)
    emit(s, args.json, lambda s: render_kv({k: str(v) if k == "path" else v for k, v in vars(s).items()}, "embeddings written"))
    return 0


def _render_eval(m: dict) -> str:
    lines = ["encoder evaluation (held-out pairs)", "-" * 35]
    for d in ("live", "video"):
        for k, v in m[d].items():
            lines.append(f"{d:<6} {k:<15} {'n/a' if v is None else f'{v:.4f}'}")
    for k in ("probe_acc_level1", "probe_acc_level2", "probe_acc_level3"):
        v = m.get(k)
        lines.append(f"{k:<22} {'n/a' if v is None else f'{v:.4f}'}")
    return "\n".join(lines)


def _eval(args) -> int:
    from fluidrec.encoder.evaluate import evaluate_encoder

    emit(evaluate_encoder(args.model, args.dataset), args.json, _render_eval)
    return 0


def _ablate(args) -> int:
    from fluidrec.encoder.ablation import ablation_demo, comparisons_md, run_ablation

    cfg = ablation_demo(args.seed)
    if args.steps is not None:
        cfg = cfg.replace(train={"steps": args.steps})
    if args.backbone is not None:
        cfg = cfg.replace(model={"backbone": args.backbone})
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    res = run_ablation(args.dataset, args.out, cfg, variants=tuple(args.variants) if args.variants is not None else None,
                       seeds=seeds, peers=args.peers, progress=not args.json)
    emit(res, args.json, lambda r: r["table"] + "\n\n" + comparisons_md(r["comparisons"]))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("encoder", help="cross-domain multimodal encoder: train, embed, eval, ablate")
    sub = p.add_subparsers(dest="encoder_command", metavar="ACTION", parser_class=type(p))
    sub.required = True

    t = sub.add_parser("train", help="two-stage Q2I contrastive training on a dataset's query-slice pairs")
    t.add_argument("--dataset", required=True, help="canonical dataset directory (slices + queries)")
    t.add_argument("--out", required=True, help="model directory (resumes a checkpoint found there)")
    t.add_argument("--preset", choices=PRESETS, default="default", help="config builder (lsa: the TF-IDF + SVD reference encoder)")
    t.add_argument("--backbone", help="language model: minilm (default), scratch, or a local HF model dir")
    t.add_argument("--vision", help="vision model: scratch (default) or a local HF model dir")
    t.add_argument("--fusion", choices=("single", "dual"))
    t.add_argument("--text-tokens", type=positive_int, help="token budget of an item's text")
    t.add_argument("--added-words", type=non_negative_int, help="add up to N frequent multi-piece words as whole tokens (0 = none)")
    t.add_argument("--steps", type=positive_int)
    t.add_argument("--batch-size", type=positive_int)
    t.add_argument("--align-fraction", type=finite_float, help="share of steps in the alignment stage (0 = single stage)")
    t.add_argument("--video-ratio", type=finite_float, help="share of each batch from short videos (0 = live only)")
    t.add_argument("--lr", type=finite_float)
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), help="each stage's rate: constant or a half cosine to 0")
    t.add_argument("--threads", type=positive_int)
    t.add_argument("--seed", type=seed_int, default=0)
    t.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    add_json_flag(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("embed", help="embed every slice (live + video) into an embedding Parquet")
    e.add_argument("--model", required=True, help="trained encoder directory")
    e.add_argument("--dataset", required=True)
    e.add_argument("--out", required=True, help="embedding Parquet to write (resumes <out>.parts/)")
    e.add_argument("--batch-size", type=positive_int, default=256)
    e.add_argument("--threads", type=positive_int, default=2)
    add_json_flag(e)
    e.set_defaults(func=_embed)

    v = sub.add_parser("eval", help="Q2I/I2Q Recall@10/50 per domain and linear-probe taxonomy accuracy")
    v.add_argument("--model", required=True)
    v.add_argument("--dataset", required=True)
    add_json_flag(v)
    v.set_defaults(func=_eval)

    a = sub.add_parser("ablate", help="Table-6-shaped ablation: backbone, fusion, schedule, domain")
    a.add_argument("--dataset", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--steps", type=positive_int, help="steps per run (default 100)")
    a.add_argument("--backbone", help="reference backbone (default minilm)")
    a.add_argument("--variants", nargs="*", help="subset of: scratch_text dual_tower single_stage live_only")
    a.add_argument("--seed", type=seed_int, default=0, help="first seed")
    a.add_argument("--seeds", type=positive_int, default=1, help="repeat every row on seeds SEED..SEED+N-1 (mean ± sd, spread verdicts)")
    a.add_argument("--peers", action="store_true", help="add the lsa peer row and, on a generated world, the oracle ceiling")
    add_json_flag(a)
    a.set_defaults(func=_ablate)
