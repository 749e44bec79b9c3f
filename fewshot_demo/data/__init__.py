"""Data sources: folders of images, built-in data sets from installed packages."""
