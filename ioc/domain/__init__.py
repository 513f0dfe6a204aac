"""Pure domain: types, the wire contract, health and rule logic. No I/O, imports nothing of ours."""
