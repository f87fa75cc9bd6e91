"""The local web server (``server``) and its page (``static/``)."""
