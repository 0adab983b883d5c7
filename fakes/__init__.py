"""Local fake servers of the third parties (Twilio Verify, Stripe) that speak their real wire format.

The adapters' real client code runs against them in the tests and in `make run`; nothing of ours is
patched. They are development tools and are not part of the service images.
"""
