"""Mail as bytes: parse received messages, sanitise their HTML, render plain text, build outgoing mail.

Pure functions without database access, so the sync workers and the web views share them.
"""
