"""Images of a grid: MRC files (:mod:`~cryorl.images.mrc`), the image model that renders atlas tiles, squares and
patches (:mod:`~cryorl.images.imaging`), simulated sessions written in the real file formats
(:mod:`~cryorl.images.synth_session`), hole finding (:mod:`~cryorl.images.vision`), an Atlas from a session's
images (:mod:`~cryorl.images.session_holes`) and pictures of a session (:mod:`~cryorl.images.look`).

The flow: data (real files, or :mod:`cryorl.synth` grids rendered here) → :class:`cryorl.Atlas` → the environment.
"""
