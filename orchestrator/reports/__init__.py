"""Reports of a run, read from the results database.

``table``: the summary as an aligned table, Markdown or JSON (what ``run`` prints and
``report`` shows). ``html``: one self-contained HTML report with inline SVG plots.
"""
