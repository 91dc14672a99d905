"""StreamDx devkit: what runs beside the services, never inside them.

- :mod:`streamdx_devkit.sim` — simulated ECG devices and ESR camera rigs (with ground truth);
- :mod:`streamdx_devkit.demo` — ``streamdx demo``, the whole system on one machine;
- :mod:`streamdx_devkit.bench_e2e` — ``streamdx bench e2e``, many streams through every service.

It imports every service; no service imports it at run time (training and evaluation code of
the inference service uses the simulators, lazily). The service images do not install it.
"""
