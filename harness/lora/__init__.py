"""The mid-block LoRA study (§4.4, App. A-B): masks and budgets (``tuning``), one arm's run (``runs``), the
study's plan (``plan``), its running (``study``) and its verdicts (``judge``), and the block finder."""
