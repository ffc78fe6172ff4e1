"""How OFA works: the idea, the sections of the chosen supernet's family (registered in
`app.families.EXPLANATIONS`: MobileNetV3's kernel transforms, its subnet builder, its channel
sorting), elastic resolution and the landscape of random subnets."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import charts
from app.families import explanation
from app.layers import family, space_summary
from app.summary import SUMMARY_CAPTION, summary_svg
from app.resources import (get_package, get_space, get_split, has_batchnorm, md, measured_samples, predictor_csv,
                           predictor_samples, user_errors)
from ofa_engine.runtime.preprocess import preprocess

st.title("How Once-for-All works")
st.image(summary_svg(), caption=SUMMARY_CAPTION)
space = get_space()
fam = family(space)
# How the family trains by default (MobileNetV3: progressive shrinking, phase by phase; the ViT:
# every elastic choice at once with the sandwich rule): the phases' names say which. A family that
# is only imported (the official ProxylessNAS and ResNet50D supernets) has no training hooks here.
try:
    phases = [phase["name"] for phase in fam.training().default_recipe()["phases"]]
    recipe = f"The default recipe of this family (`{md(fam.family)}`) has the phases {md(' → '.join(phases))}. "
except ValueError:
    recipe = (f"This family (`{md(fam.family)}`) is not trained here: its supernets are the MIT lab's, trained "
              "with progressive shrinking and imported (`import-official`). ")
resolution = (" and an input resolution" if len(space.resolutions) > 1
              else f", at its one input resolution ({space.resolutions[0]} px)")
st.markdown(
    "One **supernet** is trained once; every subnet shares its weights. A subnet is a choice among the "
    f"supernet's elastic dimensions ({md(space_summary(space))}){resolution}. Training starts from the "
    "largest network alone, then trains subnets among the elastic choices while a larger network teaches "
    "them (knowledge distillation): one elastic dimension after another (progressive shrinking, OFA's) or "
    "all at once, the smallest, the largest and random subnets in every step (the sandwich rule, BigNAS's). "
    f"{recipe}Everything below is read from the chosen `{md(get_package().name)}` supernet (the sidebar picks another).")

# ------------------------------------------------------------------------ the family's own sections
family_sections = explanation(fam.family)
section = family_sections(1) if family_sections is not None else 1

# ------------------------------------------------------------------------ resolution
# Only for a space with several input resolutions (a ViT's learned position embedding fixes one).
if len(space.resolutions) > 1:
    st.header(f"{section}. Elastic resolution")
    res_low, res_high = min(space.resolutions), max(space.resolutions)

    def largest_at(size: int):
        """The largest subnet at input size `size`."""
        return fam.config_from_dict({**space.largest().to_dict(), "image_size": size})

    macs_at = {size: fam.analyze([largest_at(size)])["macs"][0] for size in (res_low, res_high)}
    st.markdown("The same network runs at every resolution (global pooling before the classifier). "
                "MACs grow with the pixels of every feature map, which is less than the square of the "
                "input size: each stride-2 layer rounds its map up, and the layers after the pooling "
                f"cost the same at every size. The largest subnet: {macs_at[res_low] / 1e6:.2f} M MACs at "
                f"{res_low} px, {macs_at[res_high] / 1e6:.2f} M at {res_high} px "
                f"({macs_at[res_high] / macs_at[res_low]:.2f}x, against ({res_high}/{res_low})² = "
                f"{(res_high / res_low) ** 2:.2f}x).")
    test = get_split("test2k")
    index = st.slider("Test image", 0, len(test) - 1, 0, key="res_image")
    columns = st.columns(len(space.resolutions))
    for column, size in zip(columns, space.resolutions):
        x = preprocess(test.images[index:index + 1], space, size)[0, 0].numpy()
        pixels = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)   # the normalised input, back to 0..1
        pixels = np.kron(pixels, np.ones((112 // size + 1,) * 2))  # nearest-neighbour upscale to see the pixels
        macs = fam.analyze([largest_at(size)])["macs"][0]
        column.image(pixels, caption=f"{size}x{size}: {macs / 1e6:.2f} M MACs (largest)", clamp=True)
    st.caption(f"Label: {md(get_package().labels[int(test.labels[index])])}"
               + (" (channel 1 of the input shown)" if space.in_channels > 1 else ""))
    section += 1

# ------------------------------------------------------------------------ landscape
st.header(f"{section}. The landscape of random subnets")
frame = predictor_samples()
if frame is not None:
    images = ("the 5,000 Fashion-MNIST holdout images training never saw"
              if get_package().manifest.predictor_images == "fashion-mnist-holdout" else "the package's evaluation images")
    st.markdown(f"{len(frame):,} subnets (the largest, the smallest, then uniformly random ones), each "
                f"{'extracted, BN-recalibrated and measured' if has_batchnorm() else 'extracted and measured'} "
                f"on {images}: the accuracy predictor's training data "
                f"(`{md(predictor_csv().name)}` of the package). Red: the Pareto front.")
else:
    st.info(f"The package `{md(get_package().name)}` has no accuracy-predictor data set (`accuracy-dataset.csv`, "
            "written by `python -m ofa_engine accuracy-dataset --supernet PKG`); measure a small "
            "sample instead (a few seconds per subnet on this machine).", icon=":material/info:")
    n = st.slider("Subnets to measure", 4, 16, 6)
    if st.button("Measure random subnets"):
        with st.spinner("Extracting, recalibrating and evaluating subnets ..." if has_batchnorm()
                        else "Extracting and evaluating subnets ..."), user_errors("Measuring"):
            st.session_state["landscape"] = measured_samples(n, 0, 500)
    frame = st.session_state.get("landscape")
if frame is not None:
    frame = frame.assign(macs_m=frame["macs"] / 1e6, accuracy_pct=frame["accuracy"] * 100)
    st.altair_chart(charts.tradeoff_chart(frame, "macs_m", "accuracy_pct", x_title="MACs (millions)",
                                          y_title="accuracy measured on held-out images (%)", tooltip=["macs_m", "accuracy_pct", "config"]),
                    width="stretch")
    best = frame.loc[frame["accuracy"].idxmax()]
    st.caption(f"Range: {frame['macs_m'].min():.2f}-{frame['macs_m'].max():.2f} M MACs, accuracy "
               f"{frame['accuracy_pct'].min():.1f}-{frame['accuracy_pct'].max():.1f} %; best sampled "
               f"subnet {best['accuracy_pct']:.1f} % at {best['macs_m']:.2f} M MACs.")
