"""The bank's HTTP scoring service (`sampan serve`): FastAPI app, API-token and mTLS auth, scoring backends.

May import: anything below it (sampan.deploy, sampan.runtime, the capability packages, sampan.models, ...);
fastapi, uvicorn and httpx (the optional `serve` extra) only inside the modules that need them.
"""
