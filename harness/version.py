"""The package version, in a leaf module: code inside harness imports it from here, never from the
package top level (which is the Python API's face and imports the layers below it)."""

__version__ = "0.1.0"
