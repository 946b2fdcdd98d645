"""Doable: tasks for people and their AI agents. The core: domain, use cases, ports, adapters and wiring."""
