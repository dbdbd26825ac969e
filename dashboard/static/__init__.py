"""Static files of the web dashboard (a package only so that wheels include them)."""
