"""Imported once by the forkserver of the generator's worker pool (and by nothing else):
importing it builds the spectral tables and loads librosa's lazily imported parts
(~5 s), so every worker forked from that server starts warm."""

from jaxmusic.data.sample.rendering import warm_up

warm_up()
