"""Turning a cell, kernel variables and local files into a job folder, and shipping it."""
