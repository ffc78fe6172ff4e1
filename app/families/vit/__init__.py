"""The elastic Vision Transformer's sections of the app's pages (registered in `app.families.EXPLANATIONS`)."""

from __future__ import annotations

from app.families import EXPLANATIONS


@EXPLANATIONS.register("vit")
def explain(first_section: int) -> int:
    """The ViT's sections of "How OFA works" (`how_ofa_works.render`)."""
    from .how_ofa_works import render
    return render(first_section)
