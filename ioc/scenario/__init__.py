"""Record, replay and scenarios: prove the centre reacts right before going live.

- :mod:`ioc.scenario.recording` — the recording file format (gzip JSON lines), read and
  validated as a whole before anything is published; :mod:`ioc.scenario.record` and
  :mod:`ioc.scenario.replay` are ``ioc record`` and ``ioc replay``.
- :mod:`ioc.scenario.schema` and :mod:`ioc.scenario.load` — scenario files (YAML): a timeline
  of simulator actions and the alerts that must (or must not) follow;
  :mod:`ioc.scenario.plan` turns the timeline into commands and :mod:`ioc.scenario.expect`
  judges the outcome (both pure); :mod:`ioc.scenario.runner` runs a scenario against a centre
  (``ioc scenario run``), and :mod:`ioc.scenario.centre` starts one when asked.

The runner reads outcomes from the database (``events``, ``dead_letters``), never through the
HTTP API, and publishes with the simulator's MQTT login. See ``docs/scenarios.md``.
"""
