"""
twistedchat: a small multi-user chat server built on Twisted.
"""

__version__ = "0.1.0"
