"""The CDS Hooks 2.0 service: discovery, hooks, prefetch with FHIR fallback, feedback, JWT.

Needs the ``service`` extra: ``pip install 'twitch-cds[service]'``. The ASGI app is
``twitch_cds.service.app:app`` (configured from ``$TWITCH_CDS_CONFIG`` and the environment).
"""
