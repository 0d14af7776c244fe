"""The consortium control plane on the coordinator: store tables, accounts and roles, the service, the REST API.

May import: anything below it (sampan.deploy, sampan.runtime, sampan.privacy, sampan.crypto, sampan.models, ...);
fastapi, argon2, pyotp, jinja2 and authlib (the optional `console` extra) only inside the modules that need them.
"""
