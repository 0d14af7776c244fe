"""The web console: server-rendered pages (Jinja2, autoescaped) and a little JavaScript over the control plane.

Every page calls the same `ControlPlane` service and permission table as the REST API, so the console can never do
more than the API allows. Mount it with `sampan.web.console.routes.mount_console(app, plane)`.
"""
