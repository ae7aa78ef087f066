"""Reports of a run or a suite, read from the results database.

``table``: the summary as an aligned table, Markdown or JSON.
``meaning``: what a run's figures mean: the console text at its end, its HTML report's box.
``html``: one self-contained HTML report of a run, with inline SVG plots.
``answer``: a suite's answer as text: verdicts, sentences, the cost of more instances.
``readme_answer``: the README's answer: a suite exported to a committed file, then rendered.
``suite_html``: one self-contained HTML report of a suite.
``page``: what both HTML reports share: style, escaping, number formats, charts, tables.
``output``: where a report file may be written, and writing it whole or not at all.
"""
