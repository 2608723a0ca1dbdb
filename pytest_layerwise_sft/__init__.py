"""The pytest plugin of the layer-wise SFT harness, registered under the ``pytest11`` entry point: installing
the project gives any test directory its options (``--base``, ``--sft``, ``--baseline``, ...), markers and
fixtures (``measured_pair``, ``check_claim``, ...)."""
