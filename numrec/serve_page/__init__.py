"""The page of ``numrec serve``: HTML, script and style, served by :mod:`numrec.serve`."""
