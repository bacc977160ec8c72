"""`edgesync bench`: replay footage through drift in virtual time and measure strategies.

Only the clock and the network are simulated: the sampler, teacher, labeller, training
manager, worker (ultralytics fine-tuning) and registry are the live system's own code.
"""
