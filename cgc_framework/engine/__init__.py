"""The machinery that runs what the plugins provide (not imported by plugins, except where noted).

==================  ==========================================================================
module              what it is
==================  ==========================================================================
``registry``        loads the ``cgc_framework`` entry points with pluggy; records who registered what
``config``          the typed schema of ``registry.yaml`` (pydantic), safe YAML loading, messages
``compose``         config + registry -> a :class:`~cgc_framework.plugin.plan.Plan`
``leakage``         the leakage guard: evaluation molecules kept out of pretraining
``featurize``       records -> experiment graphs through builders and edge sources
``cache``           the featurization cache (raw-tensor entries keyed by builder and content)
``shards``          packed training shards (concatenated tensors + offsets, memory-mapped)
``training``        ``PretrainModel`` and the staged loop in plain PyTorch
``orchestrator``    the loop on Ray Train workers, progress, resume
``checkpoint``      the checkpoint format and the one checkpoint -> model rebuild
``pretrained``      ``load_pretrained``: embeddings from a checkpoint (``cgc-embed``, evaluators)
``report``          ``summary.md`` and the loss-curve plot
``versions``        package versions recorded in every run
==================  ==========================================================================
"""
