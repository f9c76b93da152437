from animatediff.cli import main
import sys
sys.exit(main())
