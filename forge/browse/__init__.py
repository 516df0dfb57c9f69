"""The code browser (issue 19, item 1): pages in :mod:`forge.browse.views`, reads in
:mod:`forge.browse.gitread` over the cat-file pool (:mod:`forge.catfile`)."""
