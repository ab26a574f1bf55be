"""`tfgcrf studio`: a local browser editor for interactive colorization.

`StudioApp` is a WSGI application (Werkzeug) that holds one edit session per browser tab
(`tfgcrf.Colorizer.session`); `serve` runs it on waitress. The page (HTML, JavaScript and CSS in
`static/`, shipped in the package, no build step, no CDN) sends the whole edit state (start sample,
points, links) after every change; the server brings the tab's session to that state with the
fewest point/link updates and answers with the re-solved picture and the measured time.
"""

from tfgcrf.studio.app import StudioApp, StudioServer, serve

__all__ = ["StudioApp", "StudioServer", "serve"]
