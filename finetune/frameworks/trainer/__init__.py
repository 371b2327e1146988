"""Code that runs inside a framework's own environment (under torchrun, or as a checking /
rendering subprocess): entry points, callbacks, graceful stop, parser checks, templates.

It imports only the standard library, the framework and the light modules it names (never the launcher's
pydantic / rich side), so it works in any framework environment."""
