"""Papers' published figures that a benchmark report can put beside its results (``--published``): data only, so
the command line lists the settings without importing the benchmark."""

__all__ = ["PUBLISHED"]

# Published mean good exposures, labelled as such in reports (never computed here).
PUBLISHED = {
    "cryorl-2022": {
        "source": "Fan et al. 2022 (CryoRL, first paper): Aldolase validation split (1,074 holes), "
                  "2 / 5 / 10 / 20-minute costs, ResNet-50 classifier; IBM/CryoRL-pytorch",
        "rows": {
            "cryoRL DQN, ResNet-50 (published)": {120: 41.1, 240: 87.5, 360: 130.0, 480: 165.5, 600: 198.6},
            "greedy (published)": {120: 41.8, 240: 69.3, 360: 104.9, 480: 147.9, 600: 190.0},
        },
    },
}
