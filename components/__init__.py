"""TFX components: one thin wrapper per pipeline stage over the code in `pipelines/` and `magvit/`.

Each component takes the config sections it reads as a JSON execution parameter (see
`components.config_param`), so MLMD lineage records exactly what produced every artifact and TFX
caching reruns a stage only when its inputs or its part of the config changed. Beam stages also
take the Beam pipeline options (`beam_args`) as a parameter and pass them to their Beam job.
"""
