"""MkDocs hook: render the capabilities table from the delegation registry into docs/capabilities.md.

The page holds a marker; the table itself is never written by hand, so the documentation lists
exactly the routes the backends register.
"""
MARKER = "<!-- capabilities-table -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    from portable_lattice.backends.capabilities import markdown as render
    return markdown.replace(MARKER, render())
