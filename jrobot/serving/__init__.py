"""Serving a policy bundle over the network, and driving a robot from a remote policy.

One wire protocol, openpi's: websockets with binary frames, each a msgpack map whose numpy arrays are
maps `{b"__ndarray__": True, b"data", b"dtype", b"shape"}` (`wire`). The server (`server`, the
`jrobot.serve` command) sends a metadata map on connect, answers each observation map with
`{"actions", "server_timing"}` and each bad request with a text frame, and keeps serving. The client
side (`client`) is a policy object the runtime's controller drives like a local bundle: `RemotePolicy`
for a jrobot server (the bundle's description travels in the metadata), `OpenpiPolicy` for any openpi
server (keys mapped, images resized with padding, the task sent as `prompt`).

Nothing here imports jax: a laptop driving an arm from a GPU server needs only numpy, msgpack and
websockets (the server imports the runtime's `BundlePolicy`, hence jax, when it loads a bundle).
"""
