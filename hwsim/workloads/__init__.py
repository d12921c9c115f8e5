"""Workloads as data: model shapes, arrival processes and real request traces."""
