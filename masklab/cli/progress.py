"""How an epoch reads on stderr (the study view's lines and bars)."""

from __future__ import annotations


def epoch_text(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if "train_acc" in row:
        parts.append(f"acc {row['train_acc']:.4f}")
    if "val_acc" in row:
        parts.append(f"val_acc {row['val_acc']:.4f}")
    elif "val_loss" in row:  # masked modeling: its loss, and for text its masked-token accuracy
        parts.append(f"val_loss {row['val_loss']:.4f}")
        if "val_mlm_acc" in row:
            parts.append(f"val_mlm_acc {row['val_mlm_acc']:.4f}")
    for op in row.get("ops", []):
        parts.append(f"{op['op']} {op['realized']:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
